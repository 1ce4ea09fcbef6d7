// sticky's dashboard: polls /api/overview every second and draws it. No framework: the DOM is
// built once per service and backend (keyed by id) and updated in place, so a button keeps its
// element between polls. Every value from the API is set as text, never parsed as markup.
'use strict';

(() => {
  const POLL_MS = 1000;
  const HISTORY = 120; // samples kept per series: two minutes at one poll a second
  const TOKEN_KEY = 'sticky-admin-token';
  const LATENCY_WINDOW = 10; // polls the latency quantiles are taken over
  const COLORS = ['#1f6feb', '#1a7f37', '#bf8700', '#8250df', '#cf222e', '#0a7ea4', '#bc4c00', '#57606a'];

  // What the page knows; exposed read-only for the browser test (errors seen, polls done).
  const state = {
    errors: [],
    polls: 0,
    writes: 'open',
    series: new Map(), // key -> [{t, requests, errors}]
    services: new Map(), // service id -> {section, rows: Map(backend id -> row parts)}
    timer: null,
    bounds: [], // upper bounds of the latency buckets (seconds), +Inf after the last
  };
  window.stickyDashboard = state;

  window.addEventListener('error', (e) => {
    state.errors.push(String(e.message));
    showMessage(`script error: ${e.message}`, 'error');
  });
  window.addEventListener('unhandledrejection', (e) => {
    state.errors.push(String(e.reason));
    showMessage(`script error: ${e.reason}`, 'error');
  });

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') node.className = v;
      else if (k.startsWith('data-') || k === 'title' || k === 'colspan') node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  const fmt = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : String(n));
  const rate = (r) => (r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2));

  function showMessage(text, kind) {
    const m = $('message');
    m.textContent = text;
    m.dataset.kind = kind;
    m.hidden = false;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  }

  // --- series and rates -------------------------------------------------------------------

  function record(key, t, sample) {
    let s = state.series.get(key);
    if (!s) state.series.set(key, (s = []));
    s.push({ t, ...sample });
    if (s.length > HISTORY + 1) s.shift();
    return s;
  }

  // Rates per second between successive samples of `field`; a counter that went back (sticky
  // restarted, a backend left and came back) counts as a fresh start.
  function rates(series, field) {
    const out = [];
    for (let i = 1; i < series.length; i++) {
      const dt = (series[i].t - series[i - 1].t) / 1000;
      const d = series[i][field] - series[i - 1][field];
      out.push(dt > 0 && d >= 0 ? d / dt : 0);
    }
    return out;
  }

  // Latency over the last LATENCY_WINDOW polls from the difference of two histograms: quantiles
  // interpolated inside their bucket (as Prometheus' histogram_quantile does), and the mean.
  function latencyOver(series) {
    if (series.length < 2) return null;
    const a = series[Math.max(0, series.length - 1 - LATENCY_WINDOW)];
    const b = series[series.length - 1];
    const d = b.lcounts.map((c, i) => c - (a.lcounts[i] || 0));
    const total = d.reduce((x, y) => x + y, 0);
    if (total <= 0 || d.some((x) => x < 0)) return null;
    const q = (p) => {
      const want = p * total;
      let cum = 0;
      for (let i = 0; i < d.length; i++) {
        const before = cum;
        cum += d[i];
        if (cum >= want && d[i] > 0) {
          if (i >= state.bounds.length) return Infinity;
          const lo = i === 0 ? 0 : state.bounds[i - 1];
          return lo + (state.bounds[i] - lo) * ((want - before) / d[i]);
        }
      }
      return Infinity;
    };
    return { p50: q(0.5), p95: q(0.95), mean: (b.lsum - a.lsum) / total };
  }

  // Mean latency of each poll interval (0 where nothing was answered).
  function meanLatencies(series) {
    const out = [];
    for (let i = 1; i < series.length; i++) {
      const n = series[i].requests - series[i - 1].requests;
      out.push(n > 0 ? Math.max(0, series[i].lsum - series[i - 1].lsum) / n : 0);
    }
    return out;
  }

  const duration = (s) =>
    !Number.isFinite(s) ? '> 10 s' : s >= 1 ? `${s.toFixed(2)} s` : `${(s * 1000).toFixed(s < 0.01 ? 2 : 0)} ms`;

  function sparkline(values, color) {
    const w = 120;
    const h = 24;
    const s = svg('svg', { class: 'spark', viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: 'none', 'aria-hidden': 'true' });
    const max = Math.max(...values, 0);
    // the newest sample at the right edge; the first half-minute already spans the whole width
    const span = Math.max(Math.min(values.length, HISTORY), 30) - 1;
    const pts = values.map((v, i) => {
      const x = w - ((values.length - 1 - i) * w) / span;
      const y = h - 2 - (max > 0 ? (v / max) * (h - 4) : 0);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    if (pts.length > 1) s.append(svg('polyline', { points: pts.join(' '), stroke: color }));
    return s;
  }

  function sparkCell(cell, values, color) {
    const last = values.length ? values[values.length - 1] : 0;
    cell.replaceChildren(el('div', { class: 'spark-cell' }, sparkline(values, color), el('b', {}, `${rate(last)}/s`)));
  }

  // --- writes: drain / activate -----------------------------------------------------------

  function writable() {
    return state.writes === 'open' || (state.writes === 'token' && token() !== '');
  }

  async function setDrain(service, backend, drain, button) {
    const headers = { 'Content-Type': 'application/json' };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    const path = `/api/services/${encodeURIComponent(service)}/backends/${encodeURIComponent(backend)}/${drain ? 'drain' : 'activate'}`;
    button.disabled = true;
    try {
      const r = await fetch(path, { method: 'POST', headers, body: '{}', cache: 'no-store' });
      const text = (await r.text()).trim();
      if (r.status === 401) {
        $('auth').hidden = false;
        showMessage(`401 Unauthorized: the admin API wants a token for writes; enter it above. (${text})`, 'error');
      } else if (r.status === 403) {
        showMessage(`403 Forbidden: ${text || 'this token may not write'}`, 'error');
      } else if (!r.ok) {
        showMessage(`${r.status}: ${text}`, 'error');
      } else {
        showMessage(text || `${backend} ${drain ? 'draining' : 'active'}`, 'ok');
      }
    } catch (e) {
      showMessage(`request failed: ${e.message}`, 'error');
    } finally {
      button.disabled = !writable();
      pollSoon();
    }
  }

  function renderWrites(writes) {
    state.writes = writes;
    const w = $('writes');
    w.textContent = { open: 'writes open', token: 'writes need a token', disabled: 'read-only' }[writes] || writes;
    w.className = `pill ${writes === 'disabled' ? 'warn' : ''}`;
    $('auth').hidden = writes !== 'token';
    $('forget').hidden = token() === '';
  }

  // --- services ---------------------------------------------------------------------------

  function cookieText(s) {
    const c = s.cookie_settings;
    if (!c.enabled) return 'not pinned (stickiness off)';
    const parts = [`${s.cookie}`, `Path=${c.path}`];
    if (c.domain) parts.push(`Domain=${c.domain}`);
    parts.push(c.secure === 'tls' ? 'Secure on TLS' : c.secure === 'always' ? 'Secure' : 'never Secure');
    if (c.httponly) parts.push('HttpOnly');
    if (c.samesite) parts.push(`SameSite=${c.samesite}`);
    parts.push(c.max_age_seconds != null ? `Max-Age=${c.max_age_seconds}s` : 'session cookie');
    return parts.join('; ');
  }

  function serviceView(s) {
    let view = state.services.get(s.id);
    if (view) return view;
    const title = el('h2', {}, el('span', { 'data-field': 'name' }, s.name));
    const section = el('section', { class: 'service', 'data-service': s.name });
    const settings = el('div', { class: 'settings' });
    const bar = el('div', { class: 'bar', title: 'sessions (cookies issued) per backend' });
    const legend = el('div', { class: 'legend' });
    const summary = el('div', { class: 'summary' });
    const tbody = el('tbody');
    const head = el(
      'tr',
      {},
      ...['Backend', 'Address', 'State', 'Health', 'Open', 'Sessions', 'Pinned', 'Requests', 'Request rate', 'Errors', 'Error rate', 'Latency p50 · p95 (10 s)', ''].map(
        (h) => el('th', {}, h),
      ),
    );
    section.append(title, settings, bar, legend, summary, el('table', {}, el('thead', {}, head), tbody));
    view = { section, title, settings, bar, legend, summary, tbody, rows: new Map() };
    state.services.set(s.id, view);
    return view;
  }

  function backendRow(view, s, b) {
    let row = view.rows.get(b.id);
    if (row) return row;
    const cells = {};
    const cell = (field, cls) => (cells[field] = el('td', { 'data-field': field, class: cls || '' }));
    const button = el('button', { type: 'button' });
    button.addEventListener('click', () => setDrain(s.name, b.id, button.dataset.action === 'drain', button));
    const tr = el(
      'tr',
      { 'data-backend': `${s.name}/${b.id}` },
      el('td', { 'data-field': 'id' }, el('span', { class: 'swatch' }), b.id),
      cell('addr'),
      cell('state'),
      cell('health'),
      cell('open', 'num'),
      cell('sessions', 'num'),
      cell('pinned', 'num'),
      cell('requests', 'num'),
      cell('rate', 'num'),
      cell('errors', 'num'),
      cell('error_rate', 'num'),
      cell('latency', 'num'),
      el('td', { class: 'actions' }, button),
    );
    row = { tr, cells, button, swatch: tr.querySelector('.swatch') };
    view.rows.set(b.id, row);
    return row;
  }

  function renderService(s, now) {
    const view = serviceView(s);
    view.title.replaceChildren(
      el('span', { 'data-field': 'name' }, s.name),
      el('span', { class: 'pill' }, s.mode),
      el('code', { class: 'muted' }, s.rule),
      s.strict ? el('span', { class: 'pill warn', title: 'pinned backend gone: 503, no re-pin' }, 'strict') : '',
    );
    view.settings.replaceChildren(
      'cookie ',
      el('code', {}, cookieText(s)),
      ' · health ',
      el('code', {}, s.health_check ? `GET ${s.health_check}` : 'passive only'),
      ` · priority ${s.priority}`,
    );

    const totalSessions = s.backends.reduce((a, b) => a + b.sessions, 0);
    const segments = [];
    const legend = [];
    let sumReq = [];
    let sumErr = [];
    const seen = new Set();
    s.backends.forEach((b, i) => {
      const color = COLORS[i % COLORS.length];
      seen.add(b.id);
      const row = backendRow(view, s, b);
      row.swatch.style.background = color;
      row.tr.className = b.state === 'draining' ? 'draining' : '';
      row.cells.addr.textContent = b.addr;
      row.cells.state.replaceChildren(
        el('span', { class: `pill ${b.state === 'draining' ? 'warn' : 'ok'}` }, b.state),
      );
      row.cells.health.replaceChildren(
        el('span', { class: `pill ${b.health === 'up' ? 'ok' : b.health === 'paused' ? 'warn' : 'bad'}` }, b.health),
      );
      row.cells.open.textContent = fmt(b.open_connections);
      row.cells.open.title = 'upstream connections in use by a request now';
      row.cells.sessions.textContent = fmt(b.sessions);
      row.cells.pinned.textContent = fmt(b.pinned_requests);
      row.cells.requests.textContent = fmt(b.requests);
      row.cells.errors.textContent = fmt(b.errors);
      const series = record(`${s.id}\u0000${b.id}`, now, {
        requests: b.requests,
        errors: b.errors,
        lcounts: b.latency.counts,
        lsum: b.latency.sum_seconds,
      });
      const reqRates = rates(series, 'requests');
      const errRates = rates(series, 'errors');
      sparkCell(row.cells.rate, reqRates, color);
      sparkCell(row.cells.error_rate, errRates, '#cf222e');
      const lat = latencyOver(series);
      row.cells.latency.replaceChildren(
        el(
          'div',
          { class: 'spark-cell', title: lat ? `mean ${duration(lat.mean)}` : 'no response in the last 10 s' },
          sparkline(meanLatencies(series), '#8250df'),
          el('b', { class: 'latency' }, lat ? `${duration(lat.p50)} · ${duration(lat.p95)}` : '–'),
        ),
      );
      sumReq = addInto(sumReq, reqRates);
      sumErr = addInto(sumErr, errRates);
      const drain = b.state !== 'draining';
      row.button.dataset.action = drain ? 'drain' : 'activate';
      row.button.textContent = drain ? 'Drain' : 'Activate';
      row.button.className = drain ? 'drain' : 'activate';
      row.button.hidden = state.writes === 'disabled';
      row.button.disabled = !writable();
      row.button.title = writable() ? '' : 'enter the admin token above to drain or activate';
      if (row.tr.parentNode !== view.tbody || view.tbody.children[i] !== row.tr) {
        view.tbody.insertBefore(row.tr, view.tbody.children[i] || null);
      }
      const share = totalSessions > 0 ? (100 * b.sessions) / totalSessions : 0;
      const seg = el('div', { title: `${b.id}: ${b.sessions} sessions (${share.toFixed(0)}%)` });
      seg.style.width = `${share}%`;
      seg.style.background = color;
      segments.push(seg);
      legend.push(
        el(
          'span',
          { 'data-legend': b.id },
          el('span', { class: 'swatch', title: '' }),
          `${b.id} ${fmt(b.sessions)} (${share.toFixed(0)}%)`,
        ),
      );
      legend[legend.length - 1].firstChild.style.background = color;
    });
    for (const [id, row] of view.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        view.rows.delete(id);
        state.series.delete(`${s.id}\u0000${id}`);
      }
    }
    view.bar.replaceChildren(...segments);
    view.legend.replaceChildren(el('span', {}, `sessions: ${fmt(totalSessions)}`), ...legend);

    const repins = Object.entries(s.repins).filter(([, n]) => n > 0);
    const rejects = Object.entries(s.rejects).filter(([, n]) => n > 0);
    view.summary.replaceChildren(
      el('span', {}, 'requests ', sparkline(sumReq, '#1f6feb'), el('b', {}, `${rate(last(sumReq))}/s`)),
      el('span', {}, 'errors ', sparkline(sumErr, '#cf222e'), el('b', {}, `${rate(last(sumErr))}/s`)),
      el(
        'span',
        { 'data-field': 'repins' },
        're-pins: ',
        repins.length ? repins.map(([r, n]) => `${r.replace(/_/g, ' ')} ${fmt(n)}`).join(', ') : 'none',
      ),
      rejects.length ? el('span', { class: 'pill bad' }, `503s: ${rejects.map(([r, n]) => `${r.replace(/_/g, ' ')} ${n}`).join(', ')}`) : '',
    );
    return view.section;
  }

  const last = (xs) => (xs.length ? xs[xs.length - 1] : 0);

  // Element-wise sum of two rate series aligned at their ends.
  function addInto(acc, xs) {
    const n = Math.max(acc.length, xs.length);
    const out = new Array(n).fill(0);
    acc.forEach((v, i) => (out[n - acc.length + i] += v));
    xs.forEach((v, i) => (out[n - xs.length + i] += v));
    return out;
  }

  // --- proxy and tcp ----------------------------------------------------------------------

  function card(label, value, extra) {
    return el('div', { class: 'card' }, el('div', { class: 'value' }, value), el('div', { class: 'label' }, label), extra || '');
  }

  function renderProxy(p, now) {
    const section = $('proxy');
    section.hidden = !p;
    if (!p) return;
    const series = record('\u0000proxy', now, { requests: p.connections, errors: p.unrouted_requests });
    const conns = rates(series, 'requests');
    section.replaceChildren(
      card('client connections open', fmt(p.connections_active)),
      card('new connections', `${rate(last(conns))}/s`, sparkline(conns, '#1f6feb')),
      card('connections since start', fmt(p.connections)),
      card('requests no service took (404)', fmt(p.unrouted_requests)),
    );
  }

  function meter(used, max) {
    const share = max > 0 ? used / max : 0;
    const m = el('span', { class: `meter ${share > 0.9 ? 'bad' : share > 0.75 ? 'warn' : ''}` }, el('div'));
    m.firstChild.style.width = `${Math.min(100, share * 100)}%`;
    return m;
  }

  function renderTcp(t) {
    const section = $('tcp');
    section.hidden = !t;
    if (!t) return;
    const kernel = t.path === 'kernel';
    const parts = [
      el(
        'h2',
        {},
        'tcp mode ',
        el('span', { class: `pill ${kernel ? 'ok' : 'warn'}`, 'data-field': 'tcp-path' }, kernel ? 'kernel (eBPF)' : 'user space (fallback)'),
        kernel ? el('span', { class: 'muted' }, `attached to ${t.interfaces.join(', ') || 'no interface'}`) : '',
        el('span', { class: 'muted' }, '· tables counted every 5 s'),
      ),
    ];
    if (t.maps.length) {
      parts.push(
        el(
          'table',
          {},
          el('thead', {}, el('tr', {}, el('th', {}, 'table'), el('th', {}, 'usage'), el('th', {}, 'entries'))),
          el(
            'tbody',
            {},
            ...t.maps.map((m) =>
              el(
                'tr',
                { 'data-map': m.name },
                el('td', {}, m.name),
                el('td', {}, meter(m.used, m.max), m.max > 0 ? `${((100 * m.used) / m.max).toFixed(1)}%` : ''),
                el('td', { class: 'num' }, `${fmt(m.used)} / ${fmt(m.max)}`),
              ),
            ),
          ),
        ),
      );
    }
    const flows = Object.entries(t.flows_per_backend);
    if (flows.length) {
      parts.push(el('p', {}, 'established flows per backend id: ', flows.map(([id, n]) => `#${id} ${fmt(n)}`).join(', ')));
    }
    for (const s of t.services) {
      const outcomes = Object.entries(s.outcomes).map(([o, n]) => `${o.replace(/_/g, ' ')} ${fmt(n)}`).join(', ');
      parts.push(el('p', { 'data-tcp-service': s.name }, el('b', {}, s.name), ` · ${s.active} relayed now · ${outcomes}`));
    }
    if ((t.backends || []).length) {
      const opt = (n) => (n == null ? '–' : fmt(n));
      const drainButton = (b) => {
        const drain = b.state !== 'draining';
        const button = el('button', { type: 'button', class: drain ? 'drain' : 'activate' }, drain ? 'Drain' : 'Activate');
        button.hidden = state.writes === 'disabled';
        button.disabled = !writable();
        button.title = writable() ? '' : 'enter the admin token above to drain or activate';
        button.addEventListener('click', () => setDrain(b.service, b.id, drain, button));
        return button;
      };
      const head = ['Service', 'Backend', 'Address', 'State', 'Path', 'Open', 'Connections', 'Bytes in', 'Bytes out', ''];
      parts.push(
        el(
          'table',
          { 'data-field': 'tcp-backends' },
          el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))),
          el(
            'tbody',
            {},
            ...t.backends.map((b) =>
              el(
                'tr',
                { 'data-tcp-backend': `${b.service}/${b.id}`, class: b.state === 'draining' ? 'draining' : '' },
                el('td', {}, b.service),
                el('td', {}, b.id),
                el('td', {}, b.addr),
                el('td', {}, el('span', { class: `pill ${b.state === 'draining' ? 'warn' : 'ok'}` }, b.state)),
                el('td', {}, b.path),
                el('td', { class: 'num', 'data-field': 'open' }, fmt(b.active)),
                el('td', { class: 'num', 'data-field': 'connections' }, opt(b.connections)),
                el('td', { class: 'num' }, opt(b.bytes_to_backend)),
                el('td', { class: 'num' }, opt(b.bytes_to_client)),
                el('td', {}, drainButton(b)),
              ),
            ),
          ),
        ),
      );
    }
    section.replaceChildren(...parts);
  }

  function renderDiscovery(d) {
    const section = $('discovery');
    section.hidden = !d;
    if (!d) return;
    const ago = d.last_contact_seconds_ago;
    const contact = ago == null ? 'never reached' : `last contact ${ago < 1 ? 'just now' : `${ago.toFixed(0)} s ago`}`;
    const parts = [
      el(
        'h2',
        {},
        'Swarm discovery ',
        el('span', { class: `pill ${d.docker_api === 'up' ? 'ok' : d.docker_api === 'down' ? 'bad' : 'warn'}`, 'data-field': 'docker-api' }, `Docker API ${d.docker_api}`),
        el('span', { class: 'muted', 'data-field': 'last-contact' }, contact),
      ),
    ];
    if (d.last_error) parts.push(el('p', { class: 'bad', 'data-field': 'docker-error' }, d.last_error));
    if (d.problems.length) {
      parts.push(
        el('p', {}, `services left out (${d.problem_count}):`),
        el('ul', {}, ...d.problems.map((p) => el('li', { 'data-problem': p.service }, el('b', {}, p.service), ` · ${p.problem}`))),
      );
    }
    if (d.ignored_labels.length) {
      parts.push(
        el('p', {}, `labels ignored (${d.ignored_count}): `, d.ignored_labels.map((l) => `${l.service}: ${l.label}`).join(', ')),
      );
    }
    if (!d.problems.length && !d.ignored_labels.length) parts.push(el('p', { class: 'muted' }, 'every labelled service is balanced'));
    section.replaceChildren(...parts);
  }

  // --- polling ----------------------------------------------------------------------------

  function render(doc) {
    const now = Date.now();
    renderWrites(doc.writes);
    state.bounds = doc.latency_buckets || [];
    $('source').textContent = `services from ${doc.source === 'swarm' ? 'Swarm labels' : doc.source}`;
    $('version').textContent = `v${doc.version}`;
    renderProxy(doc.proxy, now);
    const main = $('services');
    const ids = new Set(doc.services.map((s) => s.id));
    for (const [id, view] of state.services) {
      if (!ids.has(id)) {
        view.section.remove();
        state.services.delete(id);
      }
    }
    doc.services.forEach((s, i) => {
      const section = renderService(s, now);
      if (main.children[i] !== section) main.insertBefore(section, main.children[i] || null);
    });
    const empty = main.querySelector('.empty');
    if (!doc.services.length && !doc.tcp && !empty) main.append(el('p', { class: 'empty' }, 'No services yet.'));
    if ((doc.services.length || doc.tcp) && empty) empty.remove();
    renderTcp(doc.tcp);
    renderDiscovery(doc.discovery);
  }

  function setStatus(kind, text) {
    const s = $('status');
    s.dataset.state = kind;
    s.textContent = text;
  }

  async function poll() {
    state.timer = null;
    try {
      const r = await fetch('/api/overview', { cache: 'no-store' });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      render(await r.json());
      state.polls += 1;
      document.body.dataset.polls = String(state.polls);
      setStatus('live', `live · ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      setStatus('error', `admin API unreachable (${e.message}); retrying`);
    } finally {
      if (state.timer === null) state.timer = setTimeout(poll, POLL_MS);
    }
  }

  function pollSoon() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = setTimeout(poll, 50);
  }

  function init() {
    $('token').value = token();
    $('auth').addEventListener('submit', (e) => {
      e.preventDefault();
      const t = $('token').value.trim();
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
      showMessage(t ? 'token kept for this tab (sessionStorage)' : 'token cleared', 'ok');
      pollSoon();
    });
    $('forget').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $('token').value = '';
      showMessage('token forgotten', 'ok');
      pollSoon();
    });
    poll();
  }

  init();
})();
