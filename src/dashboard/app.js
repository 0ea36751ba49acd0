// Tidemark live dashboard: state from Server-Sent Events (/events), provisional windows and example
// posts from /api/query, alert rules through /api/alerts. Rendering happens at most once per animation
// frame and only for what changed, so 1,000 keys with 10 windows a second stay smooth.
/* global uPlot */
'use strict';

(() => {
  const HISTORY = 30; // windows drawn per key
  const TABLE_ROWS = 100;
  const KEY_ROWS = 50;
  const REVISION_FLASH_MS = 4000;
  const $ = (id) => document.getElementById(id);

  const S = {
    job: '',
    byKey: new Map(), // key -> Map(windowId -> record), latest revision of each window
    newest: new Map(), // key -> newest window's record
    results: 0,
    foreign: 0,
    lastId: '',
    lastSeq: 0,
    drawnSeq: 0,
    selected: null,
    userSelected: false,
    provisional: { key: null, windows: [], at: 0, error: null },
    revised: new Map(), // windowId -> { at, revision }
    alertKeys: new Map(), // key -> newest alert
    rules: [],
    alerts: [],
    status: null,
    late: [],
    dlq: [],
    sort: { col: 'count', dir: -1 },
    search: '',
    active: -1,
    options: [],
    dirty: { chart: true, table: true, keys: true, stats: true, empty: true },
    paused: false,
    queue: [],
    renderTimes: [],
  };

  const wid = (r) => `${r.key}\u0000${r.window.start}\u0000${r.window.end}`;
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const clock = (ms) => { const d = new Date(ms); return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`; };
  const clockMs = (ms) => `${clock(ms)}.${pad(new Date(ms).getUTCMilliseconds(), 3)}`;
  const span = (ms) => (ms == null ? '—' : ms < 1000 ? `${Math.round(ms)} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`);
  const fmtInt = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US'));
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const markAll = () => { for (const k of Object.keys(S.dirty)) S.dirty[k] = true; };

  // ---- state

  function addRecord(r) {
    // The page draws the sentiment job's fields; a user-defined job's results may not have them.
    if (typeof r.count !== 'number' || typeof r.avgScore !== 'number') { S.foreign++; return; }
    let wins = S.byKey.get(r.key);
    if (!wins) S.byKey.set(r.key, (wins = new Map()));
    const id = wid(r);
    const prev = wins.get(id);
    if (prev && prev.revision > r.revision && !r.final) return;
    if (prev && (prev.count !== r.count || prev.revision !== r.revision) && r.revision > 0) S.revised.set(id, { at: performance.now(), revision: r.revision });
    wins.set(id, r);
    if (!prev && wins.size > HISTORY) {
      let oldest = null;
      for (const [k, v] of wins) if (!oldest || v.window.start < oldest[1].window.start) oldest = [k, v];
      wins.delete(oldest[0]);
      S.revised.delete(oldest[0]);
    }
    const n = S.newest.get(r.key);
    if (!n || n.window.start <= r.window.start) S.newest.set(r.key, r);
    S.results++;
    if (r.key === S.selected) S.dirty.chart = true;
  }

  function ingest(records) {
    for (const r of records) addRecord(r);
    if (records.length) {
      S.dirty.table = S.dirty.keys = S.dirty.empty = true;
      if (!S.userSelected) chooseDefaultKey();
    }
  }

  function reset() {
    S.byKey.clear();
    S.newest.clear();
    S.revised.clear();
    S.results = 0;
    S.foreign = 0;
    markAll();
  }

  function chooseDefaultKey() {
    let best = null;
    for (const r of S.newest.values()) if (!best || r.count > best.count) best = r;
    if (best && best.key !== S.selected) select(best.key, false);
  }

  function select(key, byUser = true) {
    if (byUser) S.userSelected = true;
    if (S.selected === key) return;
    S.selected = key;
    S.provisional = { key, windows: [], at: 0, error: null };
    S.dirty.chart = S.dirty.keys = S.dirty.table = true;
    void pollQuery();
  }

  // ---- server events

  let es = null;
  let retry = null;

  function handle(type, ev) {
    if (S.paused) { S.queue.push([type, ev]); return; }
    const d = JSON.parse(ev.data);
    if (ev.lastEventId) {
      S.lastId = ev.lastEventId;
      const m = /:(\d+)$/.exec(ev.lastEventId);
      if (m) S.lastSeq = Number(m[1]);
    }
    switch (type) {
      case 'hello':
        S.job = d.job;
        $('job').textContent = d.job;
        document.title = `Tidemark: ${d.job}`;
        $('s-source').textContent = d.source ? (d.source.kind === 'jetstream' ? `from stream ${d.source.stream}` : `from ${d.source.subject}`) : 'no results source yet';
        break;
      case 'snapshot':
        if (d.reset) reset();
        ingest(d.records);
        break;
      case 'results':
        ingest(d.records);
        break;
      case 'status':
        S.status = d;
        S.dirty.stats = S.dirty.empty = true;
        break;
      case 'late':
      case 'dlq':
        S[type] = (d.reset ? d.records : [...d.records, ...S[type]]).slice(0, 8);
        S.dirty.stats = true;
        break;
      case 'rules':
        S.rules = d.rules;
        renderRules();
        break;
      case 'alerts':
        S.alerts = d.alerts;
        S.alertKeys.clear();
        for (const a of [...d.alerts].reverse()) S.alertKeys.set(a.key, a);
        renderAlerts();
        break;
      case 'alert':
        S.alerts = [d, ...S.alerts].slice(0, 50);
        S.alertKeys.set(d.key, d);
        S.dirty.keys = S.dirty.table = true;
        renderAlerts();
        break;
    }
  }

  function connect() {
    clearTimeout(retry);
    const url = S.lastId ? `/events?lastEventId=${encodeURIComponent(S.lastId)}` : '/events';
    es = new EventSource(url);
    for (const t of ['hello', 'snapshot', 'results', 'status', 'late', 'dlq', 'rules', 'alerts', 'alert']) es.addEventListener(t, (ev) => handle(t, ev));
    es.onopen = () => setConn('live', 'live');
    es.onerror = () => {
      setConn('down', 'reconnecting…');
      // The browser retries by itself; a stream it gave up on is reopened here, from the last event id.
      if (es.readyState === EventSource.CLOSED) retry = setTimeout(connect, 1000);
    };
  }

  function setConn(cls, text) {
    const el = $('conn');
    el.className = `conn ${cls}`;
    el.textContent = text;
  }

  async function pollQuery() {
    const key = S.selected;
    if (key == null) return;
    try {
      const res = await fetch(`/api/query?key=${encodeURIComponent(key)}`);
      const body = await res.json();
      if (key !== S.selected) return;
      S.provisional = res.ok ? { key, windows: body.windows || [], at: Date.now(), error: null } : { key, windows: [], at: Date.now(), error: body.error };
    } catch (e) {
      S.provisional = { key, windows: [], at: Date.now(), error: String(e) };
    }
    S.dirty.chart = true;
    renderExamples();
  }

  // ---- chart

  let plot = null;
  const css = getComputedStyle(document.documentElement);
  const C = Object.fromEntries(['pos', 'neg', 'neu', 'open', 'rev'].map((k) => [k, css.getPropertyValue(`--${k}`).trim()]));

  function makePlot() {
    const el = $('chart');
    const bars = uPlot.paths.bars({ size: [0.7, 60] });
    const width = Math.max(280, el.clientWidth);
    plot = new uPlot({
      width,
      height: width < 500 ? 240 : 320,
      scales: {
        // Half a window of room on each side, so the first and last bars are whole.
        x: { time: true, range: (u, min, max) => { const xs = u.data[0]; const step = xs.length > 1 ? xs[1] - xs[0] : 5; return [min - step * 0.6, max + step * 0.6]; } },
        n: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
        s: { range: (_u, min, max) => { const m = Math.max(1, Math.abs(min ?? 0), Math.abs(max ?? 0)) * 1.2; return [-m, m]; } },
      },
      axes: [
        { values: (_u, ticks) => ticks.map((t) => clock(t * 1000)) },
        { scale: 'n', label: 'posts', size: 50 },
        { scale: 's', side: 1, label: 'avg score', grid: { show: false }, size: 50 },
      ],
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        { label: 'window' , value: (_u, v) => (v == null ? '—' : clock(v * 1000)) },
        // Stacked bars: each series is drawn from zero to the running total, later ones over earlier ones.
        { label: 'neutral', scale: 'n', fill: C.neu, stroke: C.neu, paths: bars, points: { show: false }, value: (u, v, _s, i) => (v == null ? '—' : fmtInt(u.data[7][i])) },
        { label: 'negative', scale: 'n', fill: C.neg, stroke: C.neg, paths: bars, points: { show: false }, value: (u, v, _s, i) => (v == null ? '—' : fmtInt(u.data[8][i])) },
        { label: 'positive', scale: 'n', fill: C.pos, stroke: C.pos, paths: bars, points: { show: false } },
        { label: 'open (provisional)', scale: 'n', fill: 'rgba(86,180,233,0.45)', stroke: '#2b6f94', dash: [4, 3], width: 1, paths: bars, points: { show: false } },
        { label: 'avg', scale: 's', stroke: '#000', width: 2, points: { show: true, size: 5 }, value: (_u, v) => (v == null ? '—' : v.toFixed(2)) },
        { label: 'avg (open)', scale: 's', stroke: '#000', dash: [5, 4], width: 1, points: { show: true, size: 4 }, value: (_u, v) => (v == null ? '—' : v.toFixed(2)) },
        // Hidden helpers: plain counts for the legend and the test hook.
        { label: 'neutral n', show: false, scale: 'n' },
        { label: 'negative n', show: false, scale: 'n' },
      ],
      hooks: { draw: [drawRevisions] },
    }, emptyData(), el);
    new ResizeObserver(() => {
      const w = Math.max(280, el.clientWidth);
      if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: w < 500 ? 240 : 320 });
    }).observe(el);
  }

  const emptyData = () => [[], [], [], [], [], [], [], [], []];

  let chartWindows = []; // the windows behind each x index, for the revision outlines and the test hook

  function chartData() {
    const wins = S.byKey.get(S.selected);
    const fired = wins ? [...wins.values()] : [];
    const firedIds = new Set(fired.map(wid));
    const open = S.provisional.key === S.selected ? S.provisional.windows.filter((w) => w.state === 'open' && !firedIds.has(wid(w))) : [];
    const rows = [...fired.map((r) => ({ r, open: false })), ...open.map((r) => ({ r, open: true }))].sort((a, b) => a.r.window.start - b.r.window.start);
    const cut = rows.slice(-HISTORY);
    chartWindows = cut;
    const d = emptyData();
    for (const { r, open: o } of cut) {
      d[0].push(r.window.start / 1000);
      d[1].push(o ? null : r.count);
      d[2].push(o ? null : r.positive + r.negative);
      d[3].push(o ? null : r.positive);
      d[4].push(o ? r.count : null);
      d[5].push(o ? null : r.avgScore);
      d[6].push(o ? (r.avgScore ?? (r.count ? r.scoreSum / r.count : 0)) : null);
      d[7].push(o ? null : r.neutral);
      d[8].push(o ? null : r.negative);
    }
    return d;
  }

  function drawRevisions(u) {
    const now = performance.now();
    const ctx = u.ctx;
    const n = u.data[0].length;
    if (!n) return;
    // The bars' own width: 70% of the gap between windows, at most 60 px (uPlot.paths.bars size).
    const gap = n > 1 ? Math.abs(u.valToPos(u.data[0][1], 'x', true) - u.valToPos(u.data[0][0], 'x', true)) : u.bbox.width / 2;
    const w = Math.max(4, Math.min(gap * 0.7, 60 * devicePixelRatio)) + 6 * devicePixelRatio;
    ctx.save();
    ctx.strokeStyle = C.rev;
    ctx.lineWidth = 3 * devicePixelRatio;
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.fillStyle = '#6b2d55';
    for (let i = 0; i < n; i++) {
      const row = chartWindows[i];
      if (!row || row.open) continue;
      const rev = S.revised.get(wid(row.r));
      if (!rev || now - rev.at > REVISION_FLASH_MS) continue;
      const x = u.valToPos(u.data[0][i], 'x', true);
      const top = u.valToPos(u.data[1][i], 'n', true);
      const base = u.valToPos(0, 'n', true);
      ctx.strokeRect(x - w / 2, top, w, base - top);
      ctx.fillText(`rev ${rev.revision}`, x - w / 2, top - 4 * devicePixelRatio);
    }
    ctx.restore();
  }

  function renderChart() {
    if (!plot) makePlot();
    $('chart-title').textContent = S.selected == null ? 'Average sentiment per window' : `${S.selected}: posts and average sentiment per window`;
    plot.setData(chartData());
  }

  // ---- key picker (combobox + listbox, keyboard: ↑ ↓ Home End Enter Escape)

  function rankedKeys() {
    const q = S.search.trim().toLowerCase();
    const out = [];
    for (const r of S.newest.values()) if (!q || r.key.toLowerCase().includes(q)) out.push(r);
    out.sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
    return { total: out.length, rows: out.slice(0, KEY_ROWS) };
  }

  function renderKeys() {
    const { total, rows } = rankedKeys();
    S.options = rows.map((r) => r.key);
    if (S.active >= S.options.length) S.active = S.options.length - 1;
    const list = $('key-list');
    list.innerHTML = rows.map((r, i) => `<li role="option" id="opt-${i}" data-key="${esc(r.key)}" aria-selected="${r.key === S.selected}" class="${[i === S.active ? 'active' : '', S.alertKeys.has(r.key) ? 'alerting' : ''].join(' ')}"><span class="k">${esc(r.key)}</span><span class="n">${fmtInt(r.count)} · ${r.avgScore.toFixed(2)}</span></li>`).join('');
    const input = $('key-search');
    if (S.active >= 0) input.setAttribute('aria-activedescendant', `opt-${S.active}`);
    else input.removeAttribute('aria-activedescendant');
    $('key-note').textContent = total === 0 ? (S.search ? `no key matches "${S.search}"` : 'no keys yet') : total > rows.length ? `${rows.length} of ${total} keys (busiest first); type to search` : `${total} key${total === 1 ? '' : 's'}, busiest first`;
  }

  function moveActive(delta, to) {
    if (!S.options.length) return;
    S.active = to !== undefined ? to : Math.max(0, Math.min(S.options.length - 1, S.active + delta));
    renderKeys();
    document.getElementById(`opt-${S.active}`)?.scrollIntoView({ block: 'nearest' });
  }

  $('key-search').addEventListener('input', (e) => { S.search = e.target.value; S.active = 0; renderKeys(); });
  $('key-search').addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown') { e.preventDefault(); moveActive(1); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); moveActive(-1); }
    else if (e.key === 'Home' && S.search === '') { e.preventDefault(); moveActive(0, 0); }
    else if (e.key === 'End' && S.search === '') { e.preventDefault(); moveActive(0, S.options.length - 1); }
    else if (e.key === 'Enter') { e.preventDefault(); const k = S.options[S.active] ?? S.options[0]; if (k !== undefined) select(k); }
    else if (e.key === 'Escape') { e.target.value = ''; S.search = ''; S.active = -1; renderKeys(); }
  });
  $('key-list').addEventListener('click', (e) => { const li = e.target.closest('li[data-key]'); if (li) select(li.dataset.key); });

  // ---- table

  function renderTable() {
    const rows = [...S.newest.values()];
    const { col, dir } = S.sort;
    const val = (r) => (col === 'start' ? r.window.start : col === 'final' ? (r.final ? 1 : 0) : r[col]);
    rows.sort((a, b) => { const x = val(a); const y = val(b); return (x < y ? -1 : x > y ? 1 : 0) * dir || (a.key < b.key ? -1 : 1); });
    const now = performance.now();
    $('results-body').innerHTML = rows.slice(0, TABLE_ROWS).map((r) => {
      const rev = S.revised.get(wid(r));
      const cls = [r.key === S.selected ? 'sel' : '', S.alertKeys.has(r.key) ? 'alerting' : '', rev && now - rev.at < REVISION_FLASH_MS ? 'revised' : ''].join(' ');
      return `<tr data-key="${esc(r.key)}" class="${cls}"><td class="${S.alertKeys.has(r.key) ? 'alerting' : ''}">${esc(r.key)}</td><td>${clock(r.window.start)}–${clock(r.window.end)}</td><td class="num">${r.count}</td><td class="num">${r.positive}</td><td class="num">${r.negative}</td><td class="num">${r.neutral}</td><td class="num">${r.avgScore.toFixed(2)}</td><td class="num">${r.revision}</td><td>${r.final ? 'yes' : 'no'}</td></tr>`;
    }).join('');
    $('table-note').textContent = rows.length > TABLE_ROWS ? `showing ${TABLE_ROWS} of ${rows.length} keys; sort by a column to see others` : '';
  }

  document.querySelectorAll('#results th').forEach((th) => th.querySelector('button').addEventListener('click', () => {
    const col = th.dataset.col;
    S.sort = { col, dir: S.sort.col === col ? -S.sort.dir : col === 'key' || col === 'avgScore' ? 1 : -1 };
    document.querySelectorAll('#results th').forEach((h) => h.setAttribute('aria-sort', h.dataset.col === col ? (S.sort.dir > 0 ? 'ascending' : 'descending') : 'none'));
    renderTable();
  }));
  $('results-body').addEventListener('click', (e) => { const tr = e.target.closest('tr[data-key]'); if (tr) select(tr.dataset.key); });

  // ---- status, empty state, examples

  function renderStats() {
    const st = S.status;
    const s = st && st.status;
    const since = st ? Date.now() - st.at : 0;
    if (!st || !st.available) {
      setConn(es && es.readyState === EventSource.OPEN ? 'down' : 'down', st ? `job not answering: ${st.error ?? ''}`.slice(0, 120) : 'connecting…');
    } else if (es && es.readyState === EventSource.OPEN) setConn('live', 'live');
    if (s) {
      const wm = s.watermark;
      $('s-wm').textContent = wm == null ? 'none yet' : wm === '+inf' ? 'end of input' : clockMs(wm);
      $('s-lag').textContent = typeof wm === 'number' ? `${span(Date.now() - wm)} behind wall clock` : 'lag —';
      $('s-rate').textContent = st.inputRate == null ? '—' : `${fmtInt(st.inputRate)}/s`;
      $('s-pending').textContent = `consumer lag ${s.input && s.input.pending != null ? `${fmtInt(s.input.pending)} posts` : '—'}`;
      $('s-windows').textContent = `${fmtInt(s.windows.open)} / ${fmtInt(s.windows.pending)} / ${fmtInt(s.windows.closedAwaitingCheckpoint)}`;
      $('s-ckpt').textContent = s.lastCheckpoint ? `${span(s.lastCheckpoint.ageMs + since)} ago` : 'none yet';
      $('s-ckpt-sub').textContent = s.lastCheckpoint ? `#${s.lastCheckpoint.id}, ${s.lastCheckpoint.ms} ms` : '';
      $('s-late').textContent = fmtInt(s.late);
      $('s-dlq').textContent = fmtInt(s.deadLetters);
    }
    $('s-results').textContent = fmtInt(S.results);
    $('late-list').innerHTML = S.late.length ? S.late.map((l) => `<li><b>${esc(l.key)}</b> post ${esc(l.postId)} at ${clockMs(l.ts)}: window ${clock(l.window.start)}–${clock(l.window.end)} had closed (watermark ${l.watermark == null ? '+∞' : clockMs(l.watermark)})</li>`).join('') : '<li class="note">none yet</li>';
    $('dlq-list').innerHTML = S.dlq.length ? S.dlq.map((d) => `<li><b>${esc(d.reason)}</b> (seq ${d.seq}): <code>${esc(String(d.payload).slice(0, 80))}</code></li>`).join('') : '<li class="note">none yet</li>';
  }

  function renderEmpty() {
    const empty = S.results === 0;
    $('empty').classList.toggle('hidden', !empty);
    $('chart').classList.toggle('hidden', empty);
    if (!empty) return;
    const st = S.status;
    const s = st && st.status;
    $('empty-detail').textContent = S.foreign > 0
      ? `${fmtInt(S.foreign)} results arrived without the sentiment fields this page draws (count, positive, negative, neutral, avgScore).`
      : !st || !st.available
      ? `No answer yet from job "${S.job || '…'}"${st && st.error ? ` (${st.error})` : ''}. The page connects by itself once it runs.`
      : `Posts read: ${fmtInt(s.postsIn)}; windows open: ${fmtInt(s.windows.open)}; watermark ${typeof s.watermark === 'number' ? clockMs(s.watermark) : 'none yet'} (${s.config.window}, bound ${s.config.maxOutOfOrderness}). A window fires when the watermark passes its end.`;
  }

  function renderExamples() {
    $('ex-key').textContent = S.selected == null ? '' : `of ${S.selected}`;
    const el = $('examples');
    const wins = S.provisional.key === S.selected ? S.provisional.windows : [];
    const current = [...wins].sort((a, b) => b.window.start - a.window.start)[0];
    const ex = current && current.examples;
    if (!ex || !Array.isArray(ex.positive) || !Array.isArray(ex.negative)) {
      el.className = 'note';
      el.textContent = S.provisional.error ? `no examples (${S.provisional.error})` : 'no examples';
      return;
    }
    const list = (items) => (items.length ? `<ol>${items.map((p) => `<li><span class="score">${p.score > 0 ? '+' : ''}${p.score}</span> ${esc(p.text)} <span class="note">${esc(p.id)}</span></li>`).join('')}</ol>` : '<p class="note">none</p>');
    el.className = 'ex-cols';
    el.innerHTML = `<div class="ex-neg"><h3>most negative</h3>${list(ex.negative)}</div><div class="ex-pos"><h3>most positive</h3>${list(ex.positive)}</div>`;
  }

  // ---- alerts

  function renderRules() {
    $('rules').innerHTML = S.rules.length ? S.rules.map((r) => `<li>average ${r.op} ${r.threshold} with at least ${r.minCount} posts, ${r.key === undefined ? 'any key' : `key <b>${esc(r.key)}</b>`} <button type="button" data-rule="${esc(r.id)}" aria-label="remove rule ${esc(r.id)}">remove</button></li>`).join('') : '<li class="note">no rules; alerts are published on NATS as tidemark.&lt;job&gt;.alerts</li>';
  }

  function renderAlerts() {
    $('alert-log').innerHTML = S.alerts.slice(0, 20).map((a) => `<li><b>${esc(a.key)}</b> ${clock(a.window.start)}–${clock(a.window.end)}: average ${a.avgScore.toFixed(2)} over ${a.count} posts (${a.rule.op} ${a.rule.threshold})</li>`).join('');
    S.dirty.keys = S.dirty.table = true;
  }

  $('alert-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const scope = $('a-scope').value;
    if (scope === 'selected' && S.selected == null) { $('a-error').textContent = 'select a key first, or choose "any key"'; return; }
    const body = { op: $('a-op').value, threshold: Number($('a-threshold').value), minCount: Number($('a-min').value), ...(scope === 'selected' ? { key: S.selected } : {}) };
    const res = await fetch('/api/alerts', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = await res.json();
    $('a-error').textContent = res.ok ? '' : answer.error;
  });
  $('rules').addEventListener('click', async (e) => {
    const b = e.target.closest('button[data-rule]');
    if (b) await fetch(`/api/alerts/${encodeURIComponent(b.dataset.rule)}`, { method: 'DELETE' });
  });

  // ---- frame loop

  let lastTable = 0;
  let lastKeys = 0;
  let lastStats = 0;
  function frame(now) {
    requestAnimationFrame(frame);
    const t0 = performance.now();
    let did = false;
    if (S.dirty.empty) { S.dirty.empty = false; renderEmpty(); did = true; }
    // Revision outlines fade: keep the chart drawing while one is showing.
    if (S.dirty.chart || S.revised.size) {
      if (S.dirty.chart || now - (frame.lastFlash || 0) > 250) { S.dirty.chart = false; frame.lastFlash = now; renderChart(); did = true; }
      for (const [id, r] of S.revised) if (t0 - r.at > REVISION_FLASH_MS) { S.revised.delete(id); S.dirty.chart = S.dirty.table = true; }
    }
    if (S.dirty.table && now - lastTable > 250) { S.dirty.table = false; lastTable = now; renderTable(); did = true; }
    if (S.dirty.keys && now - lastKeys > 500) { S.dirty.keys = false; lastKeys = now; renderKeys(); did = true; }
    if (S.dirty.stats && now - lastStats > 500) { S.dirty.stats = false; lastStats = now; renderStats(); did = true; }
    S.drawnSeq = S.lastSeq;
    if (did) {
      S.renderTimes.push(performance.now() - t0);
      if (S.renderTimes.length > 5000) S.renderTimes.splice(0, 1000);
    }
  }

  setInterval(() => { if (!S.paused && document.visibilityState === 'visible') void pollQuery(); }, 1000);
  setInterval(() => { S.dirty.stats = true; }, 1000);

  // ---- hooks for tests and measurement (window.__tidemark)

  const quantiles = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    const r1 = (x) => Math.round(x * 10) / 10;
    const q = (p) => (s.length ? r1(s[Math.min(s.length - 1, Math.floor(p * s.length))]) : null);
    return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s.length ? r1(s[s.length - 1]) : null };
  };

  function waitFrames(n) {
    return new Promise((resolve) => { const step = () => (n-- <= 0 ? resolve() : requestAnimationFrame(step)); requestAnimationFrame(step); });
  }

  window.__tidemark = {
    /** What is drawn now: the chart's data for the selected key and the table's rows. */
    view() {
      const d = plot ? plot.data : emptyData();
      const chart = d[0].map((x, i) => ({ start: x * 1000, open: d[4][i] != null, count: d[4][i] ?? d[1][i], positive: d[3][i], negative: d[8][i], neutral: d[7][i], avgScore: d[5][i] ?? d[6][i] }));
      const table = [...document.querySelectorAll('#results-body tr')].map((tr) => { const c = [...tr.children].map((td) => td.textContent); return { key: tr.dataset.key, window: c[1], count: +c[2], positive: +c[3], negative: +c[4], neutral: +c[5], avg: c[6], revision: +c[7], final: c[8] === 'yes', alerting: tr.classList.contains('alerting') }; });
      const revised = [...S.revised.entries()].map(([id, r]) => ({ id, revision: r.revision }));
      return { selected: S.selected, results: S.results, lastSeq: S.lastSeq, drawnSeq: S.drawnSeq, lastId: S.lastId, chart, chartWindows: chartWindows.map((w) => ({ key: w.r.key, start: w.r.window.start, end: w.r.window.end, open: w.open, revision: w.r.revision })), table, revised, keys: S.newest.size };
    },
    pause() { S.paused = true; },
    async resume() { S.paused = false; const q = S.queue; S.queue = []; for (const [t, ev] of q) handle(t, ev); },
    /** Renders everything now (the test reads the view after it). */
    async settle() { markAll(); await waitFrames(3); lastTable = lastKeys = 0; markAll(); await waitFrames(2); },
    select,
    /**
     * Render budget: feeds `keys` keys with `perSecond` windows a second each through the same event
     * handler as the server's batches (JSON included) for `seconds`, and measures the frame loop.
     * The reference is the same page's idle frame interval measured just before.
     */
    async bench({ keys = 1000, perSecond = 10, seconds = 5, batchMs = 100 } = {}) {
      const frames = (ms) => new Promise((resolve) => {
        const out = [];
        let last = performance.now();
        const end = last + ms;
        const step = (t) => { out.push(t - last); last = t; if (t < end) requestAnimationFrame(step); else resolve(out); };
        requestAnimationFrame(step);
      });
      const idle = await frames(1000);
      const saved = { sel: S.selected, user: S.userSelected };
      es.close();
      reset();
      const ingestTimes = [];
      const windowMs = 1000 / perSecond;
      const t0 = Date.now() - 60_000;
      let tick = 0;
      let sent = 0;
      const rnd = (() => { let a = 7; return () => ((a = (a * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff); })();
      // The batches are made before the measurement: only the page's own work is measured.
      const batches = [];
      for (let b = 0; b < (seconds * 1000) / batchMs; b++) {
        const recs = [];
        const windowsThisTick = (batchMs / 1000) * perSecond;
        for (let w = 0; w < windowsThisTick; w++, tick++) {
          const start = t0 + tick * windowMs;
          for (let k = 0; k < keys; k++) {
            const count = 1 + Math.floor(rnd() * 60);
            const positive = Math.floor(count * rnd());
            const negative = Math.floor((count - positive) * rnd());
            const scoreSum = positive * 2 - negative * 2;
            const key = `#bench${k}`;
            recs.push({ id: `bench/${key}/${start}/${start + windowMs}/0`, job: 'bench', key, window: { start, end: start + windowMs }, count, positive, negative, neutral: count - positive - negative, scoreSum, avgScore: scoreSum / count, revision: 0, final: false, watermark: start + windowMs });
            // One window in twenty gets a revision from a late post a little later.
            if (rnd() < 0.05 && tick > 2) {
              const ps = start - 2 * windowMs;
              recs.push({ id: `bench/${key}/${ps}/${ps + windowMs}/1`, job: 'bench', key, window: { start: ps, end: ps + windowMs }, count: count + 1, positive: positive + 1, negative, neutral: count - positive - negative, scoreSum: scoreSum + 2, avgScore: (scoreSum + 2) / (count + 1), revision: 1, final: false, watermark: start });
            }
          }
        }
        sent += recs.length;
        batches.push(JSON.stringify({ records: recs, lastSeq: sent }));
      }
      const longTasks = [];
      let obs = null;
      try { obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) longTasks.push(e.duration); }); obs.observe({ type: 'longtask', buffered: false }); } catch { /* not supported */ }
      S.renderTimes = [];
      let next = 0;
      const timer = setInterval(() => {
        const data = batches[next++];
        if (data === undefined) return;
        const a = performance.now();
        handle('results', { data, lastEventId: '' });
        ingestTimes.push(performance.now() - a);
      }, batchMs);
      if (!S.userSelected || saved.sel == null || !S.newest.has(saved.sel)) S.userSelected = false;
      const loaded = await frames(seconds * 1000 + batchMs);
      clearInterval(timer);
      const fed = ingestTimes.length;
      obs?.disconnect();
      const result = { keys, perSecond, seconds, records: Math.round((sent * fed) / batches.length), recordsPerSecond: Math.round((sent * fed) / batches.length / seconds), batchesFed: fed, batches: batches.length, frameIntervalMs: quantiles(loaded), idleFrameIntervalMs: quantiles(idle), renderMs: quantiles(S.renderTimes), ingestMsPerBatch: quantiles(ingestTimes), longTasks: { count: longTasks.length, totalMs: Math.round(longTasks.reduce((x, y) => x + y, 0)) } };
      // Back to the real job: a fresh stream from the server (snapshot) replaces the synthetic keys.
      S.lastId = '';
      S.selected = saved.sel;
      S.userSelected = saved.user;
      reset();
      connect();
      return result;
    },
  };

  renderRules();
  renderStats();
  renderKeys();
  connect();
  requestAnimationFrame(frame);
})();
