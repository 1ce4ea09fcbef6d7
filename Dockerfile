# sticky as an image: one static binary, FROM scratch (no base image, so no registry is contacted).
#
#   cargo xtask image                      # static release build, then this file -> sticky:latest
#
# or by hand (what `cargo xtask image` runs; the binary must be static for a scratch image):
#
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --locked -p sticky-user --bin sticky --target x86_64-unknown-linux-gnu
#   mkdir -p target/image && cp target/x86_64-unknown-linux-gnu/release/sticky target/image/
#   DOCKER_BUILDKIT=0 docker build -f Dockerfile -t sticky:latest target/image
#
# Deploy it with deploy/stack.yml (README: "Docker Swarm").
FROM scratch
COPY sticky /sticky
# Swarm discovery through the mounted Docker socket; the stack file passes the full command line.
ENTRYPOINT ["/sticky"]
CMD ["run", "--docker", "--listen", "0.0.0.0:80"]
