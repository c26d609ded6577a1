// Sluice dashboard. Plain JavaScript, no build step, nothing from elsewhere.
// Every name shown here (host names, process names, command lines, rules)
// may have been chosen by an attacker: everything is rendered with
// textContent and createElement, never innerHTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const PAGES = ['overview', 'live', 'history', 'explain'];
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

async function api(path) {
  const r = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

const fmtTime = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
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
  if (name === 'overview') loadOverview();
  if (name === 'live') startLive(params);
  else stopLive();
  if (name === 'history') loadHistory(params);
}

function setHash(page, form) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (v) params.set(k, String(v));
  const q = params.toString();
  location.hash = q ? `${page}?${q}` : page;
}

function fillForm(form, params) {
  for (const f of form.elements) if (f.name && params.has(f.name)) f.value = params.get(f.name);
}

// ---- Policy state (every page)

async function loadStatus() {
  const node = $('#policy-state');
  try {
    const s = await api('/api/status');
    clear(node);
    const p = s.policy || {};
    node.append(el('span', `Mode: ${p.mode || 'unknown'} · policy ${p.sha256 ? p.sha256.slice(0, 12) : 'none'} · table `));
    node.append(el('span', s.table, s.table === 'live' ? '' : 'bad'));
    if (p.lastReloadAt) node.append(el('span', ` · last reload ${fmtTime(Date.parse(p.lastReloadAt))}`));
  } catch (err) {
    node.textContent = `Status unavailable: ${err.message}`;
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

function chart(node, timeline, since, bucketMs) {
  clear(node);
  const buckets = Math.max(1, Math.ceil((Date.now() - since) / bucketMs));
  const start = since - (since % bucketMs);
  const series = { allowed: new Array(buckets).fill(0), blocked: new Array(buckets).fill(0), 'would-block': new Array(buckets).fill(0) };
  for (const r of timeline) {
    const i = Math.floor((r.time - start) / bucketMs);
    if (i >= 0 && i < buckets && series[r.verdict]) series[r.verdict][i] += r.count;
  }
  const max = Math.max(1, ...Object.values(series).flat());
  const W = 600;
  const H = 160;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H + 14}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `Events per ${bucketMs / 60000} minute(s); the highest is ${max}`);
  const axis = document.createElementNS(SVG, 'line');
  for (const [k, v] of Object.entries({ x1: 0, y1: H, x2: W, y2: H, class: 'axis' })) axis.setAttribute(k, String(v));
  svg.append(axis);
  for (const [verdict, values] of Object.entries(series)) {
    const line = document.createElementNS(SVG, 'polyline');
    const step = buckets > 1 ? W / (buckets - 1) : W;
    line.setAttribute('points', values.map((v, i) => `${(i * step).toFixed(1)},${(H - (v / max) * (H - 4)).toFixed(1)}`).join(' '));
    line.setAttribute('class', `s-${verdict}`);
    svg.append(line);
  }
  for (const [x, label, anchor] of [[0, fmtTime(start).slice(11, 16), 'start'], [W, 'now', 'end']]) {
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', String(x));
    t.setAttribute('y', String(H + 12));
    t.setAttribute('text-anchor', anchor);
    t.textContent = label;
    svg.append(t);
  }
  const peak = document.createElementNS(SVG, 'text');
  peak.setAttribute('x', '2');
  peak.setAttribute('y', '10');
  peak.textContent = String(max);
  svg.append(peak);
  node.append(svg);
}

async function loadOverview() {
  try {
    const r = await api('/api/stats?since=1h&limit=10');
    const s = r.stats;
    $('#totals').textContent = s
      ? `${s.total} events: ${s.byVerdict.blocked} blocked, ${s.byVerdict['would-block']} would-block, ${s.byVerdict.allowed} allowed; ${s.attributed} with a process`
      : 'No events recorded yet.';
    chart($('#chart'), r.timeline, r.since, r.bucketMs);
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
    $('#totals').textContent = `Cannot load: ${err.message}`;
  }
}

// ---- Live (Server-Sent Events, batched; the table keeps the newest LIVE_ROWS rows)

let source = null;
let liveFilter = new URLSearchParams();
let paused = false;

function liveMatches(e) {
  const v = liveFilter.get('verdict');
  const p = liveFilter.get('process');
  const k = liveFilter.get('kind');
  if (v && e.verdict !== v) return false;
  if (k && e.kind !== k) return false;
  if (p) {
    const pr = e.process || {};
    if (pr.comm !== p && pr.exe !== p && !(pr.exe && pr.exe.endsWith(`/${p}`))) return false;
  }
  return true;
}

function liveRow(e) {
  const tr = document.createElement('tr');
  const cells = e.kind === 'dns'
    ? [fmtTime(e.time), 'DNS', e.verdict, (e.rules || []).join(', '), e.name, procName(e.process), e.client && e.client.uid !== undefined ? e.client.uid : '']
    : [fmtTime(e.time), 'connect', e.verdict, e.rule, e.hostname ? `${e.hostname} (${dest(e)})` : dest(e), procName(e.process), e.user || (e.uid !== undefined ? e.uid : '')];
  cells.forEach((c, i) => tr.append(el('td', c, i === 2 ? `v-${e.verdict}` : '')));
  return tr;
}

function startLive(params) {
  liveFilter = params;
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
    const tbody = $('#live-table tbody');
    const frag = document.createDocumentFragment();
    for (const e of batch.events.filter(liveMatches).reverse()) frag.append(liveRow(e));
    tbody.prepend(frag);
    while (tbody.rows.length > LIVE_ROWS) tbody.deleteRow(-1);
    if (batch.dropped > 0) state.textContent = `Live. ${batch.dropped} events were too many to show and were skipped.`;
  });
}

function stopLive() {
  if (source) source.close();
  source = null;
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
    }
  } catch (err) {
    state.textContent = `Cannot load: ${err.message}`;
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
  window.addEventListener('hashchange', route);
  loadStatus();
  setInterval(loadStatus, 10_000);
  setInterval(() => {
    if (!$('#page-overview').hidden) loadOverview();
  }, 30_000);
  route();
});
