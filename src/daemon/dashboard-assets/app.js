// Sluice dashboard. Plain JavaScript, no build step, nothing from elsewhere.
// Every name shown here (host names, process names, command lines, rules)
// may have been chosen by an attacker: everything is rendered with
// textContent and createElement, never innerHTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const PAGES = ['overview', 'live', 'history', 'explain', 'health', 'allow', 'policy', 'suggest'];
const LIVE_ROWS = 500;
const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** An API error: its message, the HTTP status, the parsed body and Retry-After in seconds (null when absent or not a number of seconds). */
class ApiError extends Error {
  constructor(message, status, body, retryAfter) {
    super(message);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

/** Retry-After as delay-seconds (RFC 9110 10.2.3), or an HTTP date; null for anything else. */
function retryAfterSeconds(value) {
  if (value === null) return null;
  if (/^[0-9]{1,9}$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, Math.ceil((at - Date.now()) / 1000)) : null;
}

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new ApiError(typeof body.error === 'string' ? body.error : `HTTP ${r.status}`, r.status, body, retryAfterSeconds(r.headers.get('retry-after')));
  return body;
}

// State-changing requests carry the CSRF token, which only a signed-in GET can read; the
// server also checks the Origin. Asked once per page load.
let csrfToken = null;

async function post(path, body) {
  if (!csrfToken) csrfToken = (await api('/api/session')).csrf;
  const r = await fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { accept: 'application/json', 'content-type': 'application/json', 'x-sluice-csrf': csrfToken },
    body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
  return answer;
}

/** A unified diff as text, each line coloured by what it is (rendered as text, never markup). */
function diffBlock(text) {
  const pre = el('pre', undefined, 'diff');
  for (const line of (text || '').split('\n')) {
    const cls = line.startsWith('@@') ? 'd-hunk' : line.startsWith('+') && !line.startsWith('+++') ? 'd-add' : line.startsWith('-') && !line.startsWith('---') ? 'd-del' : '';
    pre.append(el('span', `${line}\n`, cls));
  }
  return pre;
}

/** The seconds an apply from this page waits for a confirmation before it rolls back. */
const CONFIRM_SECONDS = 120;

const fmtTime = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
/** The time of day alone (UTC), for the Live page, where everything is from the last minutes. */
const fmtClock = (ms) => new Date(ms).toISOString().slice(11, 19);
const dest = (e) => `${e.dst}${e.dport !== undefined ? `:${e.dport}` : ''}${e.proto === 6 ? '/tcp' : e.proto === 17 ? '/udp' : e.proto === 1 || e.proto === 58 ? '/icmp' : ''}`;
const procName = (p) => (p ? p.exe || p.comm || `pid ${p.pid}` : '');

// ---- Routing: #page?key=value (filters live in the hash, so a view can be linked)

function route() {
  const [page, query] = location.hash.replace(/^#/, '').split('?');
  const name = PAGES.includes(page) ? page : 'overview';
  for (const p of PAGES) $(`#page-${p}`).hidden = p !== name;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.getAttribute('href') === `#${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const params = new URLSearchParams(query || '');
  if (name === 'overview') loadOverview(params);
  if (name === 'live') startLive(params);
  else stopLive();
  if (name === 'history') loadHistory(params);
  if (name === 'health') loadHealth();
  if (name === 'allow') loadAllow(params);
  if (name === 'policy') loadPolicy();
  if (name === 'suggest') loadSuggest(params);
}

function setHash(page, form) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) params.set(k, String(v));
  const q = params.toString();
  location.hash = q ? `${page}?${q}` : page;
}

// The form shows the filter in effect: what the URL says, and for what it does not say, the default
// (not what was typed before: a link without a filter shows everything, and the form must say so).
function fillForm(form, params) {
  for (const f of form.elements) {
    if (!f.name) continue;
    if (params.has(f.name)) f.value = params.get(f.name);
    else if (f.tagName === 'SELECT') {
      const d = [...f.options].find((o) => o.defaultSelected) || f.options[0];
      f.value = d ? d.value : '';
    } else f.value = f.defaultValue;
  }
}

// ---- Policy state (every page)

async function loadStatus() {
  const node = $('#policy-state');
  try {
    const s = await api('/api/status');
    showPending(s.pending);
    clear(node);
    const p = s.policy || {};
    node.append(el('span', `Mode: ${p.mode || 'unknown'} · policy ${p.sha256 ? p.sha256.slice(0, 12) : 'none'} · table `));
    node.append(el('span', s.table, s.table === 'live' ? '' : 'bad'));
    if (p.lastReloadAt) node.append(el('span', ` · last reload ${fmtTime(Date.parse(p.lastReloadAt))}`));
  } catch (err) {
    node.textContent = `Status unavailable: ${err.message}`;
  }
}

// ---- Health

// The first reading since the page was opened (or since the kernel's counters were reset by an apply).
let healthBase = null;

const ms = (s) => `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
const pctText = (x) => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);

/** The accounting figures as one flat list: [label, value getter]. */
const ACCOUNTING = [
  ['Kernel: blocked at a deny', (h) => h.accounting.kernel && h.accounting.kernel.blocked],
  ['Kernel: would-block (audit)', (h) => h.accounting.kernel && h.accounting.kernel['would-block']],
  ['Stored: blocked', (h) => h.accounting.stored.blocked],
  ['Stored: would-block', (h) => h.accounting.stored['would-block']],
  ['Held back by the log budget', (h) => h.accounting.kernel && h.accounting.kernel.suppressed],
  ['Lost in the kernel (sequence gaps)', (h) => h.accounting.lost],
  ['Dropped by the collector', (h) => h.accounting.dropped.collector],
  ['Dropped by the store', (h) => h.accounting.dropped.store],
  ['Malformed', (h) => h.accounting.malformed],
  ['Queued now', (h) => h.accounting.queued.collector + h.accounting.queued.store],
  ['Stored: allowed (logged rules)', (h) => h.accounting.stored.allowed],
];

/** Counted by the kernel at a deny, minus every place such a record can go; 0 when nothing is missing. */
function unaccounted(h, base) {
  const d = (f) => (f(h) ?? 0) - (base ? f(base) ?? 0 : 0);
  const [kb, kw, sb, sw, held, lost, dc, ds, bad] = ACCOUNTING.slice(0, 9).map(([, f]) => d(f));
  const queued = ACCOUNTING[9][1](h);
  return kb + kw - (sb + sw + held + lost + dc + ds + bad + queued);
}

function kernelReset(h, base) {
  if (!base || !h.accounting.kernel || !base.accounting.kernel) return false;
  return ACCOUNTING.slice(0, 2).some(([, f]) => f(h) < f(base)) || h.accounting.kernel.suppressed < base.accounting.kernel.suppressed;
}

async function loadHealth() {
  const state = $('#health-state');
  let h;
  try {
    h = await api('/api/health');
  } catch (err) {
    state.textContent = `Health unavailable: ${err.message}`;
    return;
  }
  if (!healthBase || kernelReset(h, healthBase)) healthBase = h;
  const base = healthBase;
  const since = Math.round((h.at - base.at) / 1000);
  const missing = h.accounting.kernel ? unaccounted(h, base) : null;
  state.textContent =
    missing === null
      ? 'The kernel counters could not be read: accounting unavailable.'
      : `Over the last ${since} s: ${missing > 0 ? `${missing} records not accounted for (in flight right now, or lost)` : 'every counted packet accounted for'}. Updated ${fmtTime(h.at)}.`;

  const acc = $('#health-accounting tbody');
  clear(acc);
  for (const [label, f] of ACCOUNTING) {
    const now = f(h);
    const was = f(base);
    const delta = now === null || now === undefined ? '-' : label === 'Queued now' ? now : now - (was ?? 0);
    row(acc, [{ text: label }, { text: delta, cls: 'num' }, { text: now ?? '-', cls: 'num' }]);
  }

  const at = $('#health-attribution tbody');
  clear(at);
  for (const m of ['kernel', 'socket', 'cgroup', 'user', 'ambiguous', 'none']) row(at, [{ text: m }, { text: h.attribution.methods[m] ?? 0, cls: 'num' }]);
  row(at, [{ text: 'with a process' }, { text: pctText(h.attribution.rate), cls: 'num' }]);
  row(at, [{ text: 'kernel probes' }, { text: h.attribution.probesLoaded === null ? '-' : h.attribution.probesLoaded ? 'loaded' : 'not loaded', cls: h.attribution.probesLoaded === false ? 'v-would-block' : '' }]);

  const loop = $('#health-loop tbody');
  clear(loop);
  row(loop, [{ text: 'event-loop delay p50 / p99 / max' }, { text: `${ms(h.loop.delay.p50)} / ${ms(h.loop.delay.p99)} / ${ms(h.loop.delay.max)}`, cls: 'num' }]);
  row(loop, [{ text: 'longest GC pause (window)' }, { text: ms(h.loop.gcMaxPause), cls: 'num' }]);
  row(loop, [{ text: 'GC pauses, total time' }, { text: `${h.loop.gcPauses}, ${ms(h.loop.gcSeconds)}`, cls: 'num' }]);
  row(loop, [{ text: 'tamper: detected / restored' }, { text: `${h.tamper.detected} / ${h.tamper.restored}`, cls: h.tamper.detected > 0 ? 'num v-would-block' : 'num' }]);
  row(loop, [{ text: 'tamper: restore failures' }, { text: h.tamper.restoreFailures, cls: h.tamper.restoreFailures > 0 ? 'num v-blocked' : 'num' }]);

  const g = $('#health-guard tbody');
  clear(g);
  if (!h.guard) row(g, [{ text: 'not running' }, { text: '-' }]);
  else {
    const l = h.guard.latency;
    row(g, [{ text: 'answer time p50 / p99 / max (last minute)' }, { text: l.count > 0 ? `${ms(l.p50)} / ${ms(l.p99)} / ${ms(l.max)}` : 'no answers', cls: 'num' }]);
    row(g, [{ text: 'answers timed' }, { text: l.count, cls: 'num' }]);
    for (const [v, n] of Object.entries(h.guard.answers)) row(g, [{ text: `answers: ${v}` }, { text: n, cls: 'num' }]);
    row(g, [{ text: 'cache hit ratio, entries' }, { text: `${pctText(h.guard.cache.hitRatio)}, ${h.guard.cache.entries}`, cls: 'num' }]);
    row(g, [{ text: 'upstream failures / timeouts / bad replies' }, { text: `${h.guard.upstream.failures} / ${h.guard.upstream.timeouts} / ${h.guard.upstream.badReplies}`, cls: h.guard.upstream.failures > 0 ? 'num v-would-block' : 'num' }]);
    row(g, [{ text: 'addresses open through answers' }, { text: h.guard.learnedAddresses, cls: 'num' }]);
  }

  const al = $('#health-alerts tbody');
  clear(al);
  if (h.alerts.length === 0) row(al, [{ text: 'no alert routes in the policy' }]);
  for (const r of h.alerts) {
    row(al, [
      { text: r.route },
      { text: r.sink },
      { text: r.queued, cls: r.queued > 0 ? 'num v-would-block' : 'num' },
      { text: r.failed, cls: r.failed > 0 ? 'num v-blocked' : 'num' },
      { text: r.delivered, cls: 'num' },
      { text: r.retried, cls: 'num' },
      { text: r.suppressed, cls: 'num' },
    ]);
  }
}

// ---- Overview

function row(tbody, cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = el('td', c.text, c.cls);
    tr.append(td);
  }
  tbody.append(tr);
}

const W = 600;
const H = 160;

/**
 * The chart's current range (ms), for dragging and the keyboard: {from, to, zoomed, start, bucketMs, step}.
 * One mapping between time and x serves the lines, the tamper marks and the drag (chartXOf, chartTimeAt):
 * bucket i (starting at start + i * bucketMs) is drawn at x = i * step.
 */
let chartRange = null;
/** The smallest range a zoom goes down to: the store's buckets are a minute at least. */
const MIN_ZOOM_MS = 5 * 60_000;

const chartXOf = (r, t) => ((t - r.start) / r.bucketMs) * r.step;
const chartTimeAt = (r, x) => r.start + (x / r.step) * r.bucketMs;

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A tamper finding as a mark across the chart at its time, with who and what as its tooltip (text, never markup). */
function tamperMark(r, m) {
  // A time in the last bucket lies past its start, the right end: kept on the chart.
  const x = Math.max(0, Math.min(W, chartXOf(r, m.time)));
  const g = svgEl('g', { class: m.restored ? 'tamper-mark restored' : 'tamper-mark', 'data-time': m.time });
  const title = document.createElementNS(SVG, 'title');
  const by = Array.isArray(m.by) ? m.by.map(String) : [];
  const changes = Array.isArray(m.changes) ? m.changes.map(String) : [];
  title.textContent = `Tamper ${fmtTime(m.time)} UTC: ${m.restored ? 'restored' : 'not restored'}${by.length ? `; by ${by.join(', ')}` : ''}${changes.length ? `; ${changes.join('; ')}` : ''}`;
  g.append(title, svgEl('line', { x1: x.toFixed(1), y1: 0, x2: x.toFixed(1), y2: H }), svgEl('path', { d: `M${(x - 4).toFixed(1)} 0H${(x + 4).toFixed(1)}L${x.toFixed(1)} 7Z` }));
  return g;
}

function chart(node, timeline, from, to, bucketMs, zoomed, tamper) {
  clear(node);
  const start = from - (from % bucketMs);
  const buckets = Math.max(1, Math.ceil((to - start) / bucketMs));
  const step = buckets > 1 ? W / (buckets - 1) : W;
  chartRange = { from, to, zoomed, start, bucketMs, step };
  const series = { allowed: new Array(buckets).fill(0), blocked: new Array(buckets).fill(0), 'would-block': new Array(buckets).fill(0) };
  for (const r of timeline) {
    const i = Math.floor((r.time - start) / bucketMs);
    if (i >= 0 && i < buckets && series[r.verdict]) series[r.verdict][i] += r.count;
  }
  const max = Math.max(1, ...Object.values(series).flat());
  const marks = (tamper || []).filter((m) => m && Number.isFinite(m.time) && m.time >= start && m.time <= to);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 14}`);
  svg.setAttribute('role', 'img');
  // The range drawn (ms), so that a reader (and the browser tests) can tell this drawing from the one before a zoom.
  svg.setAttribute('data-from', String(from));
  svg.setAttribute('data-to', String(to));
  svg.setAttribute('aria-label', `Events per ${bucketMs / 60000} minute(s) from ${fmtTime(from)} to ${fmtTime(to)} UTC; the highest is ${max}${marks.length ? `; ${marks.length} tamper finding${marks.length === 1 ? '' : 's'} marked` : ''}`);
  svg.append(svgEl('line', { x1: 0, y1: H, x2: W, y2: H, class: 'axis' }));
  for (const [verdict, values] of Object.entries(series)) {
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', values.map((v, i) => `${(i * step).toFixed(1)},${(H - (v / max) * (H - 4)).toFixed(1)}`).join(' '));
    line.setAttribute('class', `s-${verdict}`);
    svg.append(line);
  }
  for (const m of marks) svg.append(tamperMark(chartRange, m));
  const span = to - from;
  const label = (ms) => (span > 86_400_000 ? fmtTime(ms).slice(5, 16) : fmtTime(ms).slice(11, 16));
  for (const [x, text, anchor] of [[0, label(from), 'start'], [W, zoomed ? label(to) : 'now', 'end']]) {
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', String(x));
    t.setAttribute('y', String(H + 12));
    t.setAttribute('text-anchor', anchor);
    t.textContent = text;
    svg.append(t);
  }
  const peak = document.createElementNS(SVG, 'text');
  peak.setAttribute('x', '2');
  peak.setAttribute('y', '10');
  peak.textContent = String(max);
  svg.append(peak);
  node.append(svg);
}

/** Goes to the Overview zoomed into [from, to] (ms): the range is in the URL, so it can be linked and Back undoes it. */
function zoomTo(from, to) {
  const now = Date.now();
  let a = Math.max(0, Math.min(from, to));
  let b = Math.min(now, Math.max(from, to));
  if (b - a < MIN_ZOOM_MS) {
    const mid = (a + b) / 2;
    a = mid - MIN_ZOOM_MS / 2;
    b = Math.min(now, a + MIN_ZOOM_MS);
    a = b - MIN_ZOOM_MS;
  }
  // Whole seconds: a range a person can read (and type) in the address and the form.
  const at = (ms) => new Date(Math.round(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
  const q = new URLSearchParams({ from: at(a), to: at(b) });
  location.hash = `overview?${q}`;
}

function resetZoom() {
  location.hash = 'overview';
}

/** The chart's x (0..W, in its viewBox) under a pointer: the drawing keeps its aspect, so it may not fill the box. */
function chartX(svg, ev) {
  const m = svg.getScreenCTM();
  if (!m) return 0;
  const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
  return Math.max(0, Math.min(W, p.x));
}

/** Drag across the chart to zoom (pointer events: mouse, pen, touch); a click without a drag does nothing. */
function wireChartZoom(node) {
  let drag = null;
  node.addEventListener('pointerdown', (ev) => {
    const svg = node.querySelector('svg');
    if (!svg || !chartRange || ev.button !== 0) return;
    const x = chartX(svg, ev);
    const rect = document.createElementNS(SVG, 'rect');
    rect.setAttribute('class', 'zoom-sel');
    rect.setAttribute('y', '0');
    rect.setAttribute('height', String(H));
    rect.setAttribute('x', String(x));
    rect.setAttribute('width', '0');
    svg.append(rect);
    drag = { svg, x0: x, x1: x, rect, range: chartRange };
    node.setPointerCapture(ev.pointerId);
    ev.preventDefault();
  });
  node.addEventListener('pointermove', (ev) => {
    if (!drag) return;
    drag.x1 = chartX(drag.svg, ev);
    drag.rect.setAttribute('x', String(Math.min(drag.x0, drag.x1)));
    drag.rect.setAttribute('width', String(Math.abs(drag.x1 - drag.x0)));
  });
  const end = (ev, cancelled) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    d.rect.remove();
    if (node.hasPointerCapture(ev.pointerId)) node.releasePointerCapture(ev.pointerId);
    if (cancelled || Math.abs(d.x1 - d.x0) < 6) return;
    const t = (x) => chartTimeAt(d.range, x);
    zoomTo(t(Math.min(d.x0, d.x1)), t(Math.max(d.x0, d.x1)));
  };
  node.addEventListener('pointerup', (ev) => end(ev, false));
  node.addEventListener('pointercancel', (ev) => end(ev, true));
  // The keyboard way: + and - zoom around the middle, the arrows move by a quarter, 0 or Escape resets.
  node.addEventListener('keydown', (ev) => {
    if (!chartRange) return;
    const { from, to } = chartRange;
    const span = to - from;
    const mid = (from + to) / 2;
    if (ev.key === '+' || ev.key === '=') zoomTo(mid - span / 4, mid + span / 4);
    else if (ev.key === '-' || ev.key === '_') zoomTo(mid - span, Math.min(Date.now(), mid + span));
    else if (ev.key === 'ArrowLeft') zoomTo(from - span / 4, to - span / 4);
    else if (ev.key === 'ArrowRight') zoomTo(Math.min(from + span / 4, Date.now() - span), Math.min(to + span / 4, Date.now()));
    else if ((ev.key === '0' || ev.key === 'Escape') && /[?&]from=/.test(location.hash)) resetZoom();
    else return;
    ev.preventDefault();
  });
}

/** The zoom in the URL (`#overview?from=ISO&to=ISO`): null when absent; {error} when it is not a range. */
function zoomOf(params) {
  if (!params || (!params.has('from') && !params.has('to'))) return null;
  const from = Date.parse(params.get('from') || '');
  const to = Date.parse(params.get('to') || '');
  if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) return { error: 'The zoom in the address is not a time range (from before to, as 2026-12-06T10:00Z); showing the last hour.' };
  return { from, to };
}

/** The Overview's range: the last hour, or the zoom in the URL. Live refreshes only when not zoomed into the past. */
let overviewZoomed = false;
/** The latest Overview load: an older one (a live refresh still in flight when the user zooms) draws nothing when it ends. */
let overviewLoad = 0;

async function loadOverview(params) {
  const mine = ++overviewLoad;
  if (!params) params = new URLSearchParams(location.hash.split('?')[1] || '');
  const zoom = zoomOf(params);
  const zoomed = zoom && !zoom.error ? zoom : null;
  overviewZoomed = !!zoomed;
  const form = $('#zoom-form');
  form.elements.from.value = zoomed ? params.get('from') : '';
  form.elements.to.value = zoomed ? params.get('to') : '';
  $('#zoom-reset').disabled = !zoomed;
  $('#h-overview').textContent = zoomed ? `Overview: ${fmtTime(zoomed.from)} to ${fmtTime(zoomed.to)} UTC` : 'Overview: the last hour';
  $('#zoom-state').textContent = zoom && zoom.error ? zoom.error : zoomed ? 'Zoomed: the chart and the lists cover this range only, and do not refresh. Reset zoom goes back to the last hour, live.' : 'Drag across the chart (or focus it and press +) to zoom in.';
  const q = zoomed ? new URLSearchParams({ since: new Date(zoomed.from).toISOString(), until: new Date(zoomed.to).toISOString(), limit: '10' }) : new URLSearchParams({ since: '1h', limit: '10' });
  const section = $('#page-overview');
  section.setAttribute('aria-busy', 'true');
  try {
    const r = await api(`/api/stats?${q}`);
    if (mine !== overviewLoad) return;
    const s = r.stats;
    $('#totals').textContent = s
      ? `${s.total} events: ${s.byVerdict.blocked} blocked, ${s.byVerdict['would-block']} would-block, ${s.byVerdict.allowed} allowed; ${s.attributed} with a process`
      : 'No events recorded yet.';
    const tampered = Array.isArray(r.tamper) ? r.tamper.length : 0;
    if (tampered > 0) $('#totals').textContent += `. Tamper: ${tampered} finding${tampered === 1 ? '' : 's'} in this range (${r.tamper.filter((m) => m.restored).length} restored), marked on the chart`;
    $('#chart-unit').textContent = `Events per ${r.bucketMs === 60_000 ? 'minute' : `${r.bucketMs / 60_000} minutes`}`;
    chart($('#chart'), r.timeline, zoomed ? zoomed.from : r.since, zoomed ? zoomed.to : Date.now(), r.bucketMs, !!zoomed, Array.isArray(r.tamper) ? r.tamper : []);
    for (const [id, rows, cells] of [
      ['#top-destinations', s ? s.byDestination : [], (x) => [{ text: x.key }, { text: x.count, cls: 'num' }]],
      ['#top-processes', s ? s.byProcess : [], (x) => [{ text: x.key }, { text: x.count, cls: 'num' }]],
      ['#top-rules', s ? s.byRule.slice(0, 10) : [], (x) => [{ text: x.rule }, { text: x.verdict, cls: `v-${x.verdict}` }, { text: x.count, cls: 'num' }]],
    ]) {
      const tbody = $(`${id} tbody`);
      clear(tbody);
      for (const x of rows) row(tbody, cells(x));
    }
  } catch (err) {
    if (mine === overviewLoad) $('#totals').textContent = `Cannot load: ${err.message}`;
  } finally {
    if (mine === overviewLoad) section.setAttribute('aria-busy', 'false');
  }
}

// ---- Suggestions (sluice suggest, read-only: the user copies what they accept)

/** The YAML of the ticked rules, as lines under `rules:`. */
function pickedYaml() {
  const picked = [...document.querySelectorAll('#suggest-rules input[type=checkbox]:checked')].map((c) => c.closest('.card')._yaml || '');
  $('#suggest-yaml').value = picked.length ? `rules:\n${picked.join('')}` : '';
  $('#suggest-copy').disabled = picked.length === 0;
}

function figure(parent, value, text, cls) {
  const p = el('span', undefined, cls);
  p.append(el('strong', value), ` ${text}`);
  parent.append(p);
}

/** A busy server (503, `busy`: another window is being computed) is asked again after its Retry-After, clamped to this range (s), at most SUGGEST_TRIES times. */
const SUGGEST_WAIT_MIN_S = 1;
const SUGGEST_WAIT_MAX_S = 60;
const SUGGEST_TRIES = 10;
/** Which load of the Suggestions page is current: a newer one (another window, coming back to the page) ends an older one's waiting. */
let suggestRun = 0;

/** The wait before try `attempt` (1-based): the server's Retry-After, or without one 2, 4, 8... s; always within the bounds. */
function suggestWait(retryAfter, attempt) {
  const s = retryAfter !== null && retryAfter !== undefined ? retryAfter : 2 ** attempt;
  return Math.min(SUGGEST_WAIT_MAX_S, Math.max(SUGGEST_WAIT_MIN_S, s));
}

/** Waits `seconds`, counting down in `node`; false when this load is no longer current (or the page was left) meanwhile. */
async function suggestCountdown(run, seconds, node, text) {
  for (let left = seconds; left > 0; left--) {
    if (run !== suggestRun || $('#page-suggest').hidden) return false;
    node.textContent = text(left);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return run === suggestRun && !$('#page-suggest').hidden;
}

async function loadSuggest(params) {
  const run = ++suggestRun;
  fillForm($('#suggest-filter'), params);
  const since = params.get('since') || '7d';
  const state = $('#suggest-state');
  const summary = $('#suggest-summary');
  const cards = $('#suggest-rules');
  const more = $('#suggest-more');
  for (const n of [summary, cards, more]) clear(n);
  $('#suggest-pick').hidden = true;
  $('#suggest-yaml').value = '';
  const reading = `Reading the events of ${since}… (this can take a few seconds)`;
  state.textContent = reading;
  const wait = $('#suggest-wait');
  wait.textContent = '';
  let r;
  for (let attempt = 1; ; attempt++) {
    try {
      r = await api(`/api/suggest?${new URLSearchParams({ since })}`);
      break;
    } catch (err) {
      if (run !== suggestRun) return;
      const busy = err instanceof ApiError && err.status === 503 && err.body && err.body.busy === true;
      if (!busy) {
        wait.textContent = '';
        const later = err instanceof ApiError && err.status === 503 && err.retryAfter !== null ? ` (the server can take another in ${err.retryAfter} s)` : '';
        state.textContent = `Cannot suggest: ${err.message}${later}`;
        return;
      }
      if (attempt >= SUGGEST_TRIES) {
        wait.textContent = '';
        state.textContent = `Cannot suggest: the server stayed busy (${err.message}) through ${SUGGEST_TRIES} tries. Show tries again.`;
        return;
      }
      const seconds = suggestWait(err.retryAfter, attempt);
      // Said once per wait (the status is read out); the seconds left count down beside it, not read out.
      state.textContent = `Busy: ${err.message}. Waiting ${seconds} s as the server asks, then trying again by itself (try ${attempt + 1} of ${SUGGEST_TRIES}).`;
      if (!(await suggestCountdown(run, seconds, wait, (left) => `Next try in ${left} s.`))) return;
      wait.textContent = '';
      state.textContent = reading;
    }
  }
  if (run !== suggestRun) return;
  if (!r.store) {
    state.textContent = 'No events recorded yet: the daemon writes them as traffic is seen. Nothing to suggest.';
    return;
  }
  state.textContent = `${r.events} events from ${fmtTime(Date.parse(r.window.since))} to ${fmtTime(Date.parse(r.window.until))} UTC, ${r.flows} distinct flows; ${r.base ? `against the applied policy ${String(r.applied).slice(0, 12)} (${r.base})` : 'no policy is applied: a policy of its own'}. Worked out in ${r.elapsedMs} ms${r.reused ? ' (a moment ago)' : ''}.`;
  if (!r.complete) summary.append(el('p', `The scan stopped after ${r.limits.budgetMs / 1000} s, at ${fmtTime(Date.parse(r.cutAt))}: what follows was not read. The rules below are for traffic that was seen; rules never hit and promotions are not shown. Choose a shorter window, or run sluice suggest.`, 'v-blocked'));
  if (r.overflow > 0) summary.append(el('p', `${r.overflow} events beyond ${r.limits.maxFlows} distinct flows were not counted.`, 'v-would-block'));
  const figs = el('div', undefined, 'figures');
  figure(figs, r.rules.length, `new rule${r.rules.length === 1 ? '' : 's'}`);
  figure(figs, r.neverHit.length, `rule${r.neverHit.length === 1 ? '' : 's'} never hit`);
  figure(figs, r.check.wouldBreak.events, 'would break', r.check.wouldBreak.events > 0 ? 'v-blocked' : 'v-allowed');
  figure(figs, r.check.wouldBlock.events, `would block (${r.check.wouldBlock.flows} flows)`);
  summary.append(figs);
  summary.append(el('p', `The replay (sluice suggest --check) is of the applied policy with every suggested rule added, enforcing, over the same events: "would break" counts events of traffic that went through that it would block or whose name it would not resolve; "would block" counts every event it blocks.${r.covered ? ` Already allowed by the applied policy: ${r.covered.flows} flow${r.covered.flows === 1 ? '' : 's'} (${r.covered.events} event${r.covered.events === 1 ? '' : 's'}).` : ''}`, 'note'));
  if (r.rules.length === 0) {
    cards.append(el('p', 'Nothing to add: the applied policy allows every flow that went through in this window.'));
  }
  for (const rule of r.rules) {
    const card = el('article', undefined, rule.sharedZone ? 'card shared' : 'card');
    card._yaml = rule.yaml;
    const pick = el('label', undefined, 'pick');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.name = 'rule';
    box.value = rule.name;
    box.addEventListener('change', pickedYaml);
    pick.append(box, el('span', rule.name));
    card.append(pick);
    card.append(el('h3', `${rule.sender} to ${rule.to.length} destination${rule.to.length === 1 ? '' : 's'} on ${rule.ports.join(' ')}`));
    const dl = el('dl');
    const item = (k, v) => dl.append(el('dt', k), el('dd', v));
    item('To', rule.to.join(', '));
    item('Events', rule.events);
    item('First seen', `${fmtTime(Date.parse(rule.first))} UTC`);
    item('Last seen', `${fmtTime(Date.parse(rule.last))} UTC`);
    item('Days', `${rule.days} distinct day${rule.days === 1 ? '' : 's'}`);
    item('Processes', rule.processes.length ? rule.processes.join(', ') : 'unknown');
    card.append(dl);
    for (const w of rule.wildcards) card.append(el('p', `${w.pattern}: ${w.names.length} sibling names seen (${w.names.slice(0, 5).join(', ')}${w.names.length > 5 ? ', …' : ''})`, 'note'));
    for (const z of rule.shared) card.append(el('p', `Shared zone: ${z.name} is under *.${z.zone}, where anyone can create names: allowed by exact name only.`, 'v-would-block'));
    const d = el('details');
    d.append(el('summary', 'YAML'), el('pre', rule.yaml));
    card.append(d);
    cards.append(card);
  }
  if (r.rules.length > 0) {
    $('#suggest-pick').hidden = false;
    pickedYaml();
  }
  if (r.neverHit.length > 0) {
    more.append(el('h3', 'Rules never hit in the window'));
    const ul = el('ul');
    for (const c of r.neverHit) ul.append(el('li', `${c.rule} (line ${c.line}): no observed flow needed it; it could go`));
    more.append(ul);
  }
  if (r.check.wouldBreak.flows.length > 0 || r.check.wouldBreak.names.length > 0) {
    more.append(el('h3', 'What the suggested policy would break'));
    const ul = el('ul');
    for (const f of r.check.wouldBreak.flows) ul.append(el('li', `${f.hostname ? `${f.hostname} ` : ''}${f.dst}${f.dport !== undefined ? ` ${f.dport}` : ''}: ${f.events} events: ${f.why}`));
    for (const n of r.check.wouldBreak.names) ul.append(el('li', `name ${n.name} would not resolve (${n.events} events, ${n.lookups ?? 0} lookups)`));
    more.append(ul);
  }
  if (r.promotions) {
    more.append(el('h3', `Promotions (no would-block in the last ${r.promotions.stableDays} days)`));
    const ul = el('ul');
    if (r.promotions.candidates.length === 0) ul.append(el('li', 'Nothing is in audit.'));
    for (const p of r.promotions.candidates) ul.append(el('li', `${p.what}: ${p.text}`, p.stable ? 'v-allowed' : ''));
    more.append(ul);
  }
  if (r.diff) {
    const d = el('details');
    d.append(el('summary', 'The whole change against the applied policy (every suggested rule, and the could-go notes)'));
    d.append(diffBlock(r.diff));
    more.append(d);
  }
}

// ---- Live (Server-Sent Events, batched; the table keeps the newest LIVE_ROWS rows)
//
// At 1,000 events a second the server sends a batch of ~250 every 250 ms. What costs is not the
// script but the browser's layout and paint of a 500-row table each time rows go in at the top.
// So: batches go into a queue shown at most once per animation frame (several batches in one
// frame are one render; a hidden tab, which gets no frames, keeps a bounded queue); the rows
// pushed out at the bottom are reused at the top (their text nodes rewritten: no new nodes, no
// garbage per event); and the table is laid out as a grid of rows with `content-visibility: auto`
// (app.css), so the rows off screen are neither laid out nor painted again. Spreading a batch
// over several frames was measured and is worse: each render of the table has a fixed cost.

let source = null;
/** The filter in the URL, read once per change: {verdict, process, kind} ('' for any). */
let liveFilter = { verdict: '', process: '', kind: '' };
let paused = false;
/** Events received and not shown yet, oldest first; never more than LIVE_ROWS (older ones would be pushed out at once). */
let liveQueue = [];
/** The requestAnimationFrame that shows the queue; 0: none asked for. */
let liveFrame = 0;
const LIVE_CELLS = 7;

function liveMatches(e) {
  const { verdict: v, process: p, kind: k } = liveFilter;
  if (v && e.verdict !== v) return false;
  if (k && e.kind !== k) return false;
  if (p) {
    const pr = e.process || {};
    if (pr.comm !== p && pr.exe !== p && !(typeof pr.exe === 'string' && pr.exe.endsWith(`/${p}`))) return false;
  }
  return true;
}

function liveCells(e) {
  return e.kind === 'dns'
    ? [fmtClock(e.time), 'DNS', e.verdict, (e.rules || []).join(', '), e.name, procName(e.process), e.client && e.client.uid !== undefined ? e.client.uid : '']
    : [fmtClock(e.time), 'connect', e.verdict, e.rule, e.hostname ? `${e.hostname} (${dest(e)})` : dest(e), procName(e.process), e.user || (e.uid !== undefined ? e.uid : '')];
}

/** A new row: LIVE_CELLS cells, each holding one text node (rewritten in place when the row is reused). */
function liveRowNew() {
  const tr = document.createElement('tr');
  // Explicit roles: the rows are laid out as grids (app.css), which must not cost the table its semantics.
  tr.setAttribute('role', 'row');
  for (let i = 0; i < LIVE_CELLS; i++) {
    const td = document.createElement('td');
    td.setAttribute('role', 'cell');
    td.append(document.createTextNode(''));
    tr.append(td);
  }
  return tr;
}

/** Writes an event into a row (a new one or one reused from the bottom). */
function liveFill(tr, e) {
  const cells = liveCells(e);
  const tds = tr.children;
  for (let i = 0; i < LIVE_CELLS; i++) {
    const text = cells[i] === undefined || cells[i] === null ? '' : String(cells[i]);
    const node = tds[i].firstChild;
    if (node.data !== text) node.data = text;
  }
  const cls = `v-${e.verdict}`;
  if (tds[2].className !== cls) tds[2].className = cls;
  return tr;
}

/** Shows the queue (newest on top) in one render: the rows that would fall off the bottom are reused. */
function drainLive() {
  liveFrame = 0;
  if (!source || liveQueue.length === 0) return;
  const take = liveQueue;
  liveQueue = [];
  const tbody = $('#live-table tbody');
  const spare = [];
  for (let over = tbody.rows.length + take.length - LIVE_ROWS; over > 0 && tbody.lastElementChild; over--) spare.push(tbody.removeChild(tbody.lastElementChild));
  const frag = document.createDocumentFragment();
  for (let i = take.length - 1; i >= 0; i--) frag.append(liveFill(spare.pop() || liveRowNew(), take[i]));
  tbody.insertBefore(frag, tbody.firstChild);
}

function startLive(params) {
  liveFilter = { verdict: params.get('verdict') || '', process: params.get('process') || '', kind: params.get('kind') || '' };
  fillForm($('#live-filter'), params);
  if (source) return;
  const state = $('#live-state');
  state.textContent = 'Connecting…';
  source = new EventSource('/api/live');
  source.addEventListener('open', () => (state.textContent = 'Live.'));
  source.addEventListener('error', () => (state.textContent = 'Disconnected; retrying…'));
  source.addEventListener('events', (m) => {
    if (paused) return;
    let batch;
    try {
      batch = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!batch || !Array.isArray(batch.events)) return;
    for (const e of batch.events) if (e && typeof e === 'object' && liveMatches(e)) liveQueue.push(e);
    // Only the newest LIVE_ROWS can be on the page: the rest would be pushed out at once (and a hidden tab,
    // which gets no animation frames, keeps a bounded queue).
    if (liveQueue.length > LIVE_ROWS) liveQueue = liveQueue.slice(-LIVE_ROWS);
    if (!liveFrame && liveQueue.length > 0) liveFrame = requestAnimationFrame(drainLive);
    if (batch.dropped > 0) state.textContent = `Live. ${batch.dropped} events were too many to show and were skipped.`;
  });
}

function stopLive() {
  if (source) source.close();
  source = null;
  liveQueue = [];
  if (liveFrame) cancelAnimationFrame(liveFrame);
  liveFrame = 0;
}

// ---- History

function historyQuery(params) {
  const q = new URLSearchParams();
  for (const k of ['since', 'verdict', 'process', 'rule', 'limit']) if (params.get(k)) q.set(k, params.get(k));
  return q;
}

async function loadHistory(params) {
  fillForm($('#history-filter'), params);
  const q = historyQuery(params);
  const csv = new URLSearchParams(q);
  csv.set('format', 'csv');
  $('#export-csv').href = `/api/events?${csv}`;
  $('#export-json').href = `/api/events?${q}`;
  const state = $('#history-state');
  const tbody = $('#history-table tbody');
  clear(tbody);
  try {
    const r = await api(`/api/events?${q}`);
    state.textContent = `${r.events.length} events (newest first).`;
    for (const e of r.events.reverse()) {
      row(tbody, [{ text: fmtTime(e.time) }, { text: e.verdict, cls: `v-${e.verdict}` }, { text: e.rule }, { text: dest(e) }, { text: e.hostname || '' }, { text: procName(e.process) }, { text: e.user || (e.uid !== undefined ? e.uid : '') }]);
      if (e.verdict !== 'allowed' && Number.isInteger(e.id)) {
        // "Allow this…" sits in the verdict cell, which every width shows.
        const a = el('a', 'Allow this…', 'allow-link');
        a.href = `#allow?event=${e.id}`;
        a.setAttribute('aria-label', `Allow this: ${e.verdict} ${dest(e)}`);
        tbody.lastElementChild.children[1].append(' ', a);
      }
    }
  } catch (err) {
    state.textContent = `Cannot load: ${err.message}`;
  }
}

// ---- Allow this

async function loadAllow(params) {
  const out = $('#allow-result');
  clear(out);
  const id = params.get('event');
  if (!id || !/^[0-9]{1,9}$/.test(id)) {
    out.append(el('p', 'Choose a blocked event in History and follow "Allow this…".'));
    return;
  }
  out.append(el('p', 'Working it out…'));
  let r;
  try {
    r = await api(`/api/allow?event=${id}`);
  } catch (err) {
    clear(out);
    out.append(el('p', `Cannot work it out: ${err.message}`));
    return;
  }
  clear(out);
  const e = r.event;
  out.append(el('p', `Event ${e.id}: ${e.verdict} ${fmtTime(e.time)}, ${e.sender} to ${e.hostname ? `${e.hostname} (${e.dst})` : e.dst}${e.port ? ` on ${e.port}` : ''}, decided by ${e.rule}.`));
  if (r.refused) {
    out.append(el('p', r.refused, 'verdict'));
    return;
  }
  const list = el('ol', undefined, 'ladder');
  for (const s of r.steps) {
    const li = el('li');
    li.append(el('h3', s.title));
    const i = s.impact;
    li.append(
      el(
        'p',
        i.events === 0
          ? 'Lets nothing else through that was refused in the last 7 days.'
          : `Also lets through ${i.events} other refused event${i.events === 1 ? '' : 's'} (${i.flows} flow${i.flows === 1 ? '' : 's'}) of the last 7 days` +
              `${i.processes.length ? `; processes: ${i.processes.join(', ')}` : ''}${i.senders.length ? `; senders: ${i.senders.join(', ')}` : ''}${i.destinations.length ? `; to: ${i.destinations.join(', ')}` : ''}.`,
        i.events === 0 ? '' : 'v-would-block',
      ),
    );
    for (const w of s.warnings) li.append(el('p', `Warning: ${w}`, 'v-blocked'));
    li.append(el('pre', s.yaml));
    const d = el('details');
    d.append(el('summary', 'The whole policy with this rule'));
    d.append(el('pre', s.policy));
    li.append(d);
    const choose = el('button', 'Choose this step');
    choose.type = 'button';
    choose.dataset.step = s.id;
    const panel = el('div', undefined, 'apply-panel');
    panel.hidden = true;
    choose.addEventListener('click', () => {
      for (const p of list.querySelectorAll('.apply-panel')) if (p !== panel) p.hidden = true;
      showApplyPanel(panel, r, s);
      panel.hidden = false;
      const b = panel.querySelector('button');
      if (b) b.focus();
    });
    li.append(choose, panel);
    list.append(li);
  }
  out.append(list);
}

/** The chosen step: its change to the applied policy, and the button that applies it with a confirmation window. */
function showApplyPanel(panel, ladder, step) {
  clear(panel);
  panel.append(el('h4', `Change to the applied policy (${ladder.applied ? ladder.applied.slice(0, 12) : '?'})`));
  panel.append(diffBlock(step.diff));
  const actions = el('div', undefined, 'actions');
  const apply = el('button', `Apply (rolls back in ${CONFIRM_SECONDS} s unless confirmed)`, 'primary');
  apply.type = 'button';
  apply.id = 'apply-step';
  const state = el('p', '');
  state.setAttribute('role', 'status');
  state.setAttribute('aria-live', 'polite');
  apply.addEventListener('click', async () => {
    apply.disabled = true;
    state.textContent = 'Applying…';
    try {
      const a = await post('/api/allow/apply', { event: ladder.event.id, step: step.id, applied: ladder.applied, confirm: CONFIRM_SECONDS });
      state.textContent = `Applied ${String(a.sha256).slice(0, 12)} in ${a.mode} mode. Confirm before ${fmtTime(Date.parse(a.confirmBy))} or it rolls back.`;
      await refreshPending();
      const c = $('#pending-confirm');
      if (c && !c.hidden) c.focus();
    } catch (err) {
      state.textContent = `Not applied: ${err.message}`;
      apply.disabled = false;
    }
  });
  actions.append(apply);
  panel.append(actions, state);
}

// ---- Pending confirmation (every page) and the policy page

let pendingUntil = null;
let pendingTick = null;

/** Until then the bar keeps saying what the last confirmation did, though nothing is pending any more. */
let noteUntil = 0;

function showPending(p) {
  const bar = $('#pending');
  if (!p) {
    pendingUntil = null;
    clearInterval(pendingTick);
    pendingTick = null;
    const left = noteUntil - Date.now();
    if (left > 0) setTimeout(refreshPending, left + 50);
    else bar.hidden = true;
    return;
  }
  noteUntil = 0;
  $('#pending-confirm').hidden = false;
  pendingUntil = Date.now() + p.secondsLeft * 1000;
  const paint = () => {
    const left = Math.max(0, Math.round((pendingUntil - Date.now()) / 1000));
    $('#pending-text').textContent = left > 0 ? `A policy change waits for confirmation: it rolls back in ${left} s unless confirmed.` : 'The confirmation window has ended: rolling back.';
    if (left <= 0) setTimeout(refreshPending, 1500);
  };
  paint();
  bar.hidden = false;
  clearInterval(pendingTick);
  pendingTick = setInterval(paint, 1000);
}

/** The pending-confirmation bar, from /api/status (cheap; the page asks it every 10 s anyway). */
async function refreshPending() {
  try {
    const r = await api('/api/status');
    showPending(r.pending);
  } catch {
    // The status line says why.
  }
}

async function confirmPending(button) {
  button.disabled = true;
  try {
    const r = await post('/api/confirm', {});
    noteUntil = Date.now() + 8000;
    button.hidden = true;
    showPending(null);
    $('#pending-text').textContent = r.wroteBack && !r.wroteBack.written ? `Confirmed. The policy file was not changed: ${r.wroteBack.reason}` : 'Confirmed: the change stays.';
    loadStatus();
    if (!$('#page-policy').hidden) loadPolicy();
  } catch (err) {
    $('#pending-text').textContent = `Not confirmed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

async function loadPolicy() {
  const result = $('#policy-result');
  const tbody = $('#policy-versions tbody');
  let r;
  try {
    r = await api('/api/policy');
  } catch (err) {
    result.textContent = `Unavailable: ${err.message}`;
    return;
  }
  showPending(r.pending);
  const a = r.applied;
  $('#policy-applied').textContent = a ? `Applied: ${a.sha256.slice(0, 12)} (${a.mode}) from ${a.file}, since ${fmtTime(Date.parse(a.at))}.` : 'Nothing is applied.';
  showRules(r.rules);
  clear(tbody);
  for (const v of r.versions) {
    const tr = el('tr');
    tr.append(el('td', fmtTime(Date.parse(v.at))));
    const who = v.by ? (v.by.via === 'dashboard' ? `dashboard (${v.by.auth}, ${v.by.remote})` : v.by.via === 'cli' ? `command line (uid ${v.by.uid}${v.by.sudoUser ? `, sudo ${v.by.sudoUser}` : ''})` : v.by.via === 'confirm-timer' ? 'the confirmation timer (not confirmed in time)' : v.by.via === 'restore' ? 'the boot-time restore (never confirmed)' : String(v.by.via || '')) : '';
    tr.append(el('td', `${v.event}${who ? ` by ${who}` : ''}${v.by && v.by.rule ? `: allow ${v.by.rule}` : ''}${v.by && v.by.rollbackTo ? `: back to ${v.by.rollbackTo.slice(0, 12)}` : ''}`));
    tr.append(el('td', v.sha256 ? `${v.sha256.slice(0, 12)}${v.mode ? ` ${v.mode}` : ''}` : '-'));
    const cell = el('td');
    if (v.diff) {
      const d = el('details');
      d.append(el('summary', 'Diff against the one before'));
      d.append(diffBlock(v.diff));
      cell.append(d);
    }
    if (v.sha256 && v.kept && a && v.sha256 !== a.sha256) {
      const b = el('button', 'Roll back to this one');
      b.type = 'button';
      b.addEventListener('click', async () => {
        b.disabled = true;
        result.textContent = 'Applying…';
        try {
          const x = await post('/api/policy/rollback', { to: v.sha256, applied: a.sha256, confirm: CONFIRM_SECONDS });
          result.textContent = `Applied ${String(x.sha256).slice(0, 12)} again. Confirm before ${fmtTime(Date.parse(x.confirmBy))} or it rolls back.`;
          await loadPolicy();
        } catch (err) {
          result.textContent = `Not applied: ${err.message}`;
          b.disabled = false;
        }
      });
      cell.append(b);
    }
    tr.append(cell);
    // Explicit roles: at phone width the rows are laid out as grids (app.css), which must not cost the table its semantics.
    tr.setAttribute('role', 'row');
    for (const td of tr.children) td.setAttribute('role', 'cell');
    tbody.append(tr);
  }
}

const fmtCount = (n) => (n === null || n === undefined ? '?' : Number(n).toLocaleString('en-US'));

/** The applied policy's rules with their kernel counters (GET /api/policy's `rules`), every name rendered as text. */
function showRules(rules) {
  const summary = $('#policy-rules-summary');
  const tbody = $('#policy-rules tbody');
  clear(tbody);
  if (!rules) {
    summary.textContent = 'No policy is applied, or its snapshot cannot be read.';
    return;
  }
  const parts = [`${rules.total} rule${rules.total === 1 ? '' : 's'}, mode ${rules.mode}, default ${rules.defaultAction}.`];
  if (rules.scopes.length > 0) parts.push(`Scopes: ${rules.scopes.map((s) => `${s.name} (${s.mode}: ${s.who})`).join('; ')}.`);
  if (rules.counted) {
    parts.push(`No rule matched: ${fmtCount(rules.default.packets)} packets (${rules.default.action}).`);
    parts.push(rules.neverHitTotal === 0 ? 'Every rule has been hit.' : `Never hit: ${rules.neverHitTotal} (${rules.neverHit.slice(0, 20).join(', ')}${rules.neverHitTotal > 20 ? ', …' : ''}).`);
  } else {
    parts.push("The kernel's counters could not be read.");
  }
  if (rules.rules.length < rules.total) parts.push(`The first ${rules.rules.length} are listed.`);
  summary.textContent = parts.join(' ');
  for (const rule of rules.rules) {
    const tr = el('tr');
    tr.dataset.rule = rule.name;
    const name = el('td');
    name.append(el('strong', rule.name));
    name.append(el('span', ` line ${rule.line}`, 'note'));
    if (rule.comment) name.append(el('div', rule.comment, 'note'));
    tr.append(name);
    const action = el('td', rule.action, rule.action === 'allow' ? 'v-allowed' : 'v-blocked');
    action.dataset.label = 'Action';
    tr.append(action);
    const what = [`to ${rule.to}`, `ports ${rule.ports}`];
    if (rule.from !== 'anyone') what.push(`from ${rule.from}`);
    if (rule.interfaces) what.push(`via ${rule.interfaces}`);
    if (rule.mode) what.push(`its own mode: ${rule.mode}`);
    if (rule.scopes.length > 0) what.push(`scopes: ${rule.scopes.join(', ')}`);
    if (rule.log) what.push('logged');
    const matches = el('td', what.join(' · '));
    matches.dataset.label = 'Matches';
    tr.append(matches);
    const never = rules.counted && rule.packets === 0;
    const packets = el('td', never ? '0 (never hit)' : fmtCount(rule.packets), never ? 'num never-hit' : 'num');
    packets.dataset.packets = rule.packets === null ? '' : String(rule.packets);
    // The labels show at phone width, where each rule is stacked as a card (app.css).
    packets.dataset.label = 'Packets';
    tr.append(packets);
    const bytes = el('td', fmtCount(rule.bytes), 'num');
    bytes.dataset.label = 'Bytes';
    tr.append(bytes);
    // Explicit roles: at phone width the rows are laid out as grids, which must not cost the table its semantics.
    tr.setAttribute('role', 'row');
    for (const td of tr.children) td.setAttribute('role', 'cell');
    tbody.append(tr);
  }
}

// ---- Explain

async function explain(form) {
  const out = $('#explain-result');
  clear(out);
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) q.set(k, String(v));
  try {
    const r = await api(`/api/explain?${q}`);
    const verdict = r.verdict === 'allow' ? 'ALLOW' : r.verdict === 'redirect' ? 'REDIRECTED TO THE DNS GUARD' : r.enforced ? 'BLOCK' : 'WOULD BLOCK (audit mode)';
    out.append(el('p', verdict, 'verdict'));
    out.append(el('p', r.summary));
    const list = el('ul');
    for (const m of r.matches || []) {
      if (m.result === 'no') continue;
      list.append(el('li', `${m.result === 'yes' ? 'matches' : 'might match'}: ${m.action} rule ${m.rule} (line ${m.line})`));
    }
    if (list.children.length > 0) out.append(list);
  } catch (err) {
    out.append(el('p', err.message));
  }
}

// ---- Wiring (no inline handlers: the Content-Security-Policy forbids them)

document.addEventListener('DOMContentLoaded', () => {
  $('#live-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setHash('live', ev.target);
  });
  $('#live-pause').addEventListener('click', (ev) => {
    paused = !paused;
    ev.target.setAttribute('aria-pressed', String(paused));
    ev.target.textContent = paused ? 'Resume' : 'Pause';
  });
  $('#history-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setHash('history', ev.target);
  });
  $('#explain-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    explain(ev.target);
  });
  $('#pending-confirm').addEventListener('click', (ev) => confirmPending(ev.currentTarget));
  wireChartZoom($('#chart'));
  $('#zoom-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const from = Date.parse(ev.target.elements.from.value.trim());
    const to = Date.parse(ev.target.elements.to.value.trim());
    if (!Number.isFinite(from) || !Number.isFinite(to) || from >= to) {
      $('#zoom-state').textContent = 'Want two times, From before To, such as 2026-12-06T10:00Z.';
      return;
    }
    zoomTo(from, to);
  });
  $('#zoom-reset').addEventListener('click', resetZoom);
  $('#suggest-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    setHash('suggest', ev.target);
  });
  const tick = (on) => {
    for (const c of document.querySelectorAll('#suggest-rules input[type=checkbox]')) c.checked = on;
    pickedYaml();
  };
  $('#suggest-all').addEventListener('click', () => tick(true));
  $('#suggest-none').addEventListener('click', () => tick(false));
  $('#suggest-copy').addEventListener('click', async () => {
    const t = $('#suggest-yaml');
    try {
      await navigator.clipboard.writeText(t.value);
      $('#suggest-state').textContent = 'Copied the selected rules.';
    } catch {
      t.focus();
      t.select();
      $('#suggest-state').textContent = 'Selected: copy with Ctrl+C.';
    }
  });
  window.addEventListener('hashchange', route);
  loadStatus();
  setInterval(loadStatus, 10_000);
  // Live only when not zoomed into the past: a zoomed range is a fixed piece of history.
  setInterval(() => {
    if (!$('#page-overview').hidden && !overviewZoomed) loadOverview();
  }, 30_000);
  setInterval(() => {
    if (!$('#page-health').hidden) loadHealth();
  }, 5_000);
  route();
});
