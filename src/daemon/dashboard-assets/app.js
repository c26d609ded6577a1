// Sluice dashboard. Plain JavaScript, no build step, nothing from elsewhere.
// Every name shown here (host names, process names, command lines, rules)
// may have been chosen by an attacker: everything is rendered with
// textContent and createElement, never innerHTML.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const PAGES = ['overview', 'live', 'history', 'explain', 'health', 'allow', 'policy'];
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
  if (name === 'overview') loadOverview();
  if (name === 'live') startLive(params);
  else stopLive();
  if (name === 'history') loadHistory(params);
  if (name === 'health') loadHealth();
  if (name === 'allow') loadAllow(params);
  if (name === 'policy') loadPolicy();
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
    ? [fmtClock(e.time), 'DNS', e.verdict, (e.rules || []).join(', '), e.name, procName(e.process), e.client && e.client.uid !== undefined ? e.client.uid : '']
    : [fmtClock(e.time), 'connect', e.verdict, e.rule, e.hostname ? `${e.hostname} (${dest(e)})` : dest(e), procName(e.process), e.user || (e.uid !== undefined ? e.uid : '')];
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
  clear(tbody);
  for (const v of r.versions) {
    const tr = el('tr');
    tr.append(el('td', fmtTime(Date.parse(v.at))));
    const who = v.by ? (v.by.via === 'dashboard' ? `dashboard (${v.by.auth}, ${v.by.remote})` : v.by.via === 'cli' ? `command line (uid ${v.by.uid}${v.by.sudoUser ? `, sudo ${v.by.sudoUser}` : ''})` : String(v.by.via || '')) : '';
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
  window.addEventListener('hashchange', route);
  loadStatus();
  setInterval(loadStatus, 10_000);
  setInterval(() => {
    if (!$('#page-overview').hidden) loadOverview();
  }, 30_000);
  setInterval(() => {
    if (!$('#page-health').hidden) loadHealth();
  }, 5_000);
  route();
});
