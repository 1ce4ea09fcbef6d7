/* Preloaded into wrk (LD_PRELOAD) by `cargo xtask bench` for its https rows; built per run with cc.
 *
 * wrk reuses one OpenSSL SSL object per connection slot: on reconnect it calls SSL_shutdown and
 * SSL_clear, which keep the last session, so its next SSL_connect offers it and the server resumes.
 * With STICKY_BENCH_TLS_FULL=1 the session is dropped after SSL_clear, so every connection does a full
 * handshake. Either way every completed handshake is counted, with how many were resumptions, and
 * the counts are written to $STICKY_BENCH_TLS_COUNTS as one JSON line when wrk exits, so the bench
 * checks that a "handshake" row did full handshakes and a "resumed" row resumed.
 *
 * wrk sends its URL's host as SNI; for an address that is not a valid server name (RFC 6066), so
 * $STICKY_BENCH_TLS_SNI, if set, replaces it (SSL_set_tlsext_host_name is a macro over SSL_ctrl).
 *
 * Only wrk's own calls are wrapped; OpenSSL's functions are looked up with dlsym, so the file needs
 * no OpenSSL headers and loads into the programs between (ip, taskset) without libssl. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

static unsigned long long handshakes, resumed;
static int used;

static void *real(const char *name) {
  void *f = dlsym(RTLD_NEXT, name);
  if (f == NULL) {
    fprintf(stderr, "wrk-tls.so: no %s\n", name);
    abort();
  }
  return f;
}

int SSL_connect(SSL *s) {
  static int (*connect)(SSL *);
  static int (*reused)(const SSL *);
  if (connect == NULL) {
    connect = (int (*)(SSL *))real("SSL_connect");
    reused = (int (*)(const SSL *))real("SSL_session_reused");
  }
  used = 1;
  int r = connect(s);
  if (r == 1) {
    handshakes++;
    if (reused(s)) {
      resumed++;
    }
  }
  return r;
}

/* SSL_CTRL_SET_TLSEXT_HOSTNAME in OpenSSL 1.1 and 3 (tls1.h). */
#define SET_TLSEXT_HOSTNAME 55

long SSL_ctrl(SSL *s, int cmd, long larg, void *parg) {
  static long (*ctrl)(SSL *, int, long, void *);
  if (ctrl == NULL) {
    ctrl = (long (*)(SSL *, int, long, void *))real("SSL_ctrl");
  }
  const char *sni = getenv("STICKY_BENCH_TLS_SNI");
  if (cmd == SET_TLSEXT_HOSTNAME && sni != NULL && *sni != '\0') {
    parg = (void *)sni;
  }
  return ctrl(s, cmd, larg, parg);
}

int SSL_clear(SSL *s) {
  static int (*clear)(SSL *);
  static int (*set_session)(SSL *, SSL_SESSION *);
  if (clear == NULL) {
    clear = (int (*)(SSL *))real("SSL_clear");
    set_session = (int (*)(SSL *, SSL_SESSION *))real("SSL_set_session");
  }
  int r = clear(s);
  const char *full = getenv("STICKY_BENCH_TLS_FULL");
  if (full != NULL && strcmp(full, "1") == 0) {
    set_session(s, NULL);
  }
  return r;
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("STICKY_BENCH_TLS_COUNTS");
  if (!used || path == NULL) {
    return;
  }
  FILE *f = fopen(path, "w");
  if (f != NULL) {
    fprintf(f, "{\"handshakes\":%llu,\"resumed\":%llu}\n", handshakes, resumed);
    fclose(f);
  }
}
