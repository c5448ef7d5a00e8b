// The operator console: plain DOM and SVG, no library, no build step. Every
// call goes to the service's public API (and /metrics for the backlog); with
// API_KEYS set the key is asked for once and kept in this tab's sessionStorage.
// Text from the API is always set as text (textContent), never as HTML.

const keyStorage = 'job-manager.apiKey';
/** Live updates poll this often (no open stream, so the page goes network-idle between polls). */
const pollMs = 5_000;
/** The live chart's span. */
const windowMs = 10 * 60_000;
/** At most this many pages of `GET /messages/sent` per sample (100 each). */
const maxSentPages = 10;
const e164 = /^\+[1-9]\d{7,14}$/;

const $ = (id) => document.getElementById(id);
const keyRequired = document.querySelector('meta[name="job-manager-api-key"]')?.content === 'required';

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** One API call: JSON in and out, the stored key as X-API-Key; a 401 asks for a key again. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(keyStorage);
  if (key) headers['X-API-Key'] = key;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await response.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(keyStorage);
    askForKey(key ? 'The service did not accept that key; enter another.' : '');
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.code, data?.error?.message ?? `HTTP ${response.status}`);
  }
  return data;
}

/** An element with attributes and children; strings become text nodes. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ''));
  return node;
}

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(label, onPress, className) {
  const node = el('button', { type: 'button', class: className }, label);
  node.addEventListener('click', async (event) => {
    event.stopPropagation();
    node.disabled = true;
    try {
      await onPress();
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

/** A timestamp as local `YYYY-MM-DD HH:MM:SS`, or an empty cell. */
function time(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function notify(text) {
  $('notice').textContent = text;
}

function showError(id, error) {
  $(id).textContent = error ? `${error.message}${error.code ? ` (${error.code})` : ''}` : '';
}

// ---- API key ----------------------------------------------------------------

let started = false;

function askForKey(reason) {
  $('landing').hidden = true;
  $('detail').hidden = true;
  $('key-form').hidden = false;
  $('key-error').textContent = reason;
  $('key-input').focus();
}

$('key-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('key-input').value.trim();
  if (!key) return;
  sessionStorage.setItem(keyStorage, key);
  try {
    await api('GET', '/jobs');
  } catch {
    return; // a refused key asked again (api); any other failure shows once the console is up
  }
  $('key-input').value = '';
  $('key-form').hidden = true;
  $('key-error').textContent = '';
  start();
});

// ---- views --------------------------------------------------------------------

const detailRoute = /^#\/messages\/([0-9a-fA-F-]{36})$/;

function route() {
  if (!$('key-form').hidden) return;
  const match = detailRoute.exec(location.hash);
  if (match) {
    $('landing').hidden = true;
    $('detail').hidden = false;
    openMessage(match[1]);
  } else {
    const cameFromDetail = !$('detail').hidden;
    $('detail').hidden = true;
    $('landing').hidden = false;
    detail.id = undefined;
    if (cameFromDetail) refreshLanding();
    const section = location.hash.length > 1 ? document.getElementById(location.hash.slice(1)) : null;
    section?.scrollIntoView();
  }
}

// ---- messages -----------------------------------------------------------------

const list = { status: '', to: '', cursor: undefined, nextCursor: null, shown: '' };

function messagesQuery() {
  const query = new URLSearchParams({ limit: '20' });
  if (list.status) query.set('status', list.status);
  if (list.to) query.set('to', list.to);
  if (list.cursor) query.set('cursor', list.cursor);
  return `/messages?${query}`;
}

async function loadMessages() {
  let page;
  try {
    page = await api('GET', messagesQuery());
  } catch (error) {
    showError('messages-error', error);
    return;
  }
  showError('messages-error');
  list.nextCursor = page.nextCursor;
  $('next-page').disabled = !page.nextCursor;
  $('first-page').disabled = !list.cursor;
  const shown = JSON.stringify(page.items);
  if (shown === list.shown) return; // nothing changed: leave the rows (and any focus) alone
  list.shown = shown;
  const rows = page.items.map((message) => {
    const row = el(
      'tr',
      { tabindex: '0', 'data-id': message.id },
      el('td', {}, time(message.createdAt)),
      el('td', {}, message.to),
      el('td', { class: `status status-${message.status}` }, message.status),
      el('td', {}, message.attempts),
      el('td', { class: 'content', title: message.content }, message.content),
      el('td', {}, message.lastError ?? ''),
      el('td', {}, time(message.sentAt)),
    );
    const open = () => {
      location.hash = `#/messages/${message.id}`;
    };
    row.addEventListener('click', open);
    row.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') open();
    });
    return row;
  });
  const empty = el('tr', {}, el('td', { colspan: '7' }, 'No messages match.'));
  $('messages-table').tBodies[0].replaceChildren(...(rows.length > 0 ? rows : [empty]));
}

$('message-filter').addEventListener('submit', (event) => {
  event.preventDefault();
  const to = $('recipient-filter').value.replace(/[\s()-]/g, '');
  if (to && !e164.test(to)) {
    $('messages-error').textContent = 'Recipient: an E.164 number, + and 8 to 15 digits (e.g. +905551111111).';
    return;
  }
  list.status = $('status-filter').value;
  list.to = to;
  list.cursor = undefined;
  loadMessages();
});
$('status-filter').addEventListener('change', () => $('message-filter').requestSubmit());
$('next-page').addEventListener('click', () => {
  list.cursor = list.nextCursor ?? undefined;
  loadMessages();
});
$('first-page').addEventListener('click', () => {
  list.cursor = undefined;
  loadMessages();
});

$('retry-failed-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const since = $('retry-failed-since').value;
  const submit = event.submitter;
  if (submit) submit.disabled = true;
  $('retry-failed-result').textContent = '';
  try {
    const result = await api(
      'POST',
      '/messages/retry-failed',
      since ? { since: new Date(since).toISOString() } : undefined,
    );
    $('retry-failed-result').textContent =
      `${result.retried} failed ${result.retried === 1 ? 'message is' : 'messages are'} pending again.`;
    await loadMessages();
  } catch (error) {
    $('retry-failed-result').textContent = `Retry failed did not go through: ${error.message}`;
  } finally {
    if (submit) submit.disabled = false;
  }
});

// ---- one message --------------------------------------------------------------

const detail = { id: undefined, shown: '', attemptsCursor: null };

const fieldNames = [
  ['id', 'Id'],
  ['to', 'To'],
  ['status', 'Status'],
  ['attempts', 'Attempts'],
  ['content', 'Content'],
  ['lastError', 'Last error'],
  ['externalMessageId', 'External message id'],
  ['sendAt', 'Send at'],
  ['createdAt', 'Created'],
  ['sentAt', 'Sent'],
];

async function openMessage(id) {
  if (detail.id !== id) {
    detail.id = id;
    detail.shown = '';
    $('detail-id').textContent = id;
    $('detail-fields').replaceChildren();
    $('detail-actions').replaceChildren();
    $('attempts-table').tBodies[0].replaceChildren();
    $('attempts-note').textContent = '';
  }
  await refreshMessage();
}

async function refreshMessage() {
  const id = detail.id;
  let message;
  try {
    message = await api('GET', `/messages/${id}`);
  } catch (error) {
    showError('detail-error', error);
    return;
  }
  if (id !== detail.id) return;
  showError('detail-error');
  const shown = JSON.stringify(message);
  if (shown === detail.shown) return;
  detail.shown = shown;
  renderMessage(message);
  await loadAttempts(true);
}

function renderMessage(message) {
  const fields = fieldNames.flatMap(([field, label]) => {
    const value = message[field];
    const text = /At$/.test(field) ? time(value) : (value ?? '');
    return [el('dt', {}, label), el('dd', { class: field === 'status' ? `status status-${value}` : undefined }, text)];
  });
  $('detail-fields').replaceChildren(...fields);
  const actions = [];
  if (message.status === 'pending' || message.status === 'failed') {
    actions.push(button('Cancel', () => act(message.id, 'cancel', 'Message cancelled.'), 'danger'));
  }
  if (message.status === 'failed' || message.status === 'cancelled') {
    actions.push(button('Retry', () => act(message.id, 'retry', 'Message is pending again.')));
  }
  $('detail-actions').replaceChildren(...actions);
}

async function act(id, action, done) {
  try {
    const message = await api('POST', `/messages/${id}/${action}`);
    showError('detail-error');
    notify(done);
    detail.shown = JSON.stringify(message);
    renderMessage(message);
  } catch (error) {
    showError('detail-error', error);
  }
}

async function loadAttempts(fromStart) {
  const id = detail.id;
  const query = new URLSearchParams({ limit: '100' });
  if (!fromStart && detail.attemptsCursor) query.set('cursor', detail.attemptsCursor);
  let page;
  try {
    page = await api('GET', `/messages/${id}/attempts?${query}`);
  } catch (error) {
    $('attempts-note').textContent =
      error.status === 404
        ? 'This service does not report attempts for this message (no attempt history).'
        : `Attempts could not be read: ${error.message}`;
    return;
  }
  if (id !== detail.id) return;
  detail.attemptsCursor = page.nextCursor;
  $('more-attempts').hidden = !page.nextCursor;
  $('attempts-note').textContent = fromStart && page.items.length === 0 ? 'No attempt yet.' : '';
  const rows = page.items.map((attempt) =>
    el(
      'tr',
      {},
      el('td', {}, attempt.attempt),
      el('td', {}, time(attempt.startedAt)),
      el('td', { class: `outcome outcome-${attempt.outcome}` }, attempt.outcome),
      el('td', {}, attempt.httpStatus ?? ''),
      el('td', {}, `${attempt.durationMs} ms`),
      el('td', {}, attempt.error ?? ''),
      el('td', { class: 'excerpt' }, el('pre', {}, attempt.responseExcerpt ?? '')),
    ),
  );
  const body = $('attempts-table').tBodies[0];
  if (fromStart) body.replaceChildren(...rows);
  else body.append(...rows);
}

$('more-attempts').addEventListener('click', () => loadAttempts(false));

// ---- jobs -----------------------------------------------------------------------

let jobsShown = '';

async function loadJobs() {
  let jobs;
  try {
    ({ jobs } = await api('GET', '/jobs'));
  } catch (error) {
    showError('jobs-error', error);
    return;
  }
  showError('jobs-error');
  renderJobs(jobs);
}

function renderJobs(jobs) {
  const shown = JSON.stringify(jobs);
  if (shown === jobsShown) return;
  jobsShown = shown;
  const rows = jobs.map((job) =>
    el(
      'tr',
      { 'data-job': job.name },
      el('td', {}, job.name),
      el('td', { class: `status status-${job.status}` }, job.status),
      el('td', {}, `${job.intervalSeconds} s`),
      el('td', {}, job.batchSize),
      el('td', {}, time(job.lastTriggeredAt)),
      el('td', {}, time(job.nextRunAt)),
      el('td', {}, job.runCount),
      el(
        'td',
        {},
        button('Start', () => switchJob(job.name, 'start')),
        ' ',
        button('Stop', () => switchJob(job.name, 'stop')),
      ),
    ),
  );
  $('jobs-table').tBodies[0].replaceChildren(...rows);
}

async function switchJob(name, action) {
  try {
    const { jobs } = await api('PUT', `/jobs/${action}`, { name });
    notify(`${name}: ${jobs[0]?.status ?? action}`);
    await loadJobs();
  } catch (error) {
    showError('jobs-error', error);
  }
}

// ---- live chart -------------------------------------------------------------------

/**
 * Sent messages seen in the window (id -> sentAt ms), from when on that record
 * is complete (ms), and the backlog samples ([ms, pending or null]).
 */
const live = { sent: new Map(), completeFrom: Number.POSITIVE_INFINITY, samples: [] };
/** The delivery rate is drawn at this step across the window (from the sent messages' own times). */
const rateStepMs = 15_000;

async function sampleLive() {
  const now = Date.now();
  const horizon = now - windowMs - 60_000;
  let cursor;
  let pages = 0;
  let reachedKnown = false;
  let oldestFetched = now;
  do {
    const query = new URLSearchParams({ limit: '100' });
    if (cursor) query.set('cursor', cursor);
    const page = await api('GET', `/messages/sent?${query}`);
    for (const message of page.items) {
      const sentAt = Date.parse(message.sentAt);
      oldestFetched = Math.min(oldestFetched, sentAt);
      if (sentAt < horizon || live.sent.has(message.id)) reachedKnown = true;
      if (sentAt >= horizon) live.sent.set(message.id, sentAt);
    }
    cursor = page.nextCursor;
    pages += 1;
  } while (cursor && !reachedKnown && pages < maxSentPages);
  // Stopped at the page limit: nothing is known before the oldest fetched (a gap may lie behind it).
  if (cursor && !reachedKnown) live.completeFrom = oldestFetched;
  else if (live.completeFrom === Number.POSITIVE_INFINITY) live.completeFrom = horizon;
  for (const [id, sentAt] of live.sent) if (sentAt < horizon) live.sent.delete(id);
  live.samples.push([now, await pendingFromMetrics()]);
  while (live.samples.length > 0 && live.samples[0][0] < now - windowMs) live.samples.shift();
  renderLive(now);
}

/** `job_manager_messages_pending` from /metrics (the whole database's backlog), or null. */
async function pendingFromMetrics() {
  try {
    const response = await fetch('/metrics', { cache: 'no-store' });
    const text = await response.text();
    const match = /^job_manager_messages_pending(?:\{[^}]*\})? (\S+)/m.exec(text);
    return response.ok && match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

function deliveredInMinuteBefore(at) {
  let count = 0;
  for (const sentAt of live.sent.values()) if (sentAt > at - 60_000 && sentAt <= at) count += 1;
  return count;
}

function renderLive(now) {
  const rate = [];
  for (let at = now - windowMs; at <= now; at += rateStepMs) {
    if (at - 60_000 >= live.completeFrom) rate.push([at, deliveredInMinuteBefore(at)]);
  }
  if (rate.at(-1)?.[0] !== now) rate.push([now, deliveredInMinuteBefore(now)]);
  const backlog = live.samples.filter(([, pending]) => pending !== null);
  const lastRate = rate.at(-1)?.[1] ?? 0;
  const lastBacklog = live.samples.at(-1)?.[1];
  $('live-figures').textContent =
    `Delivered in the last minute: ${live.completeFrom > now - 60_000 ? 'at least ' : ''}${lastRate} · ` +
    `Backlog: ${lastBacklog === null || lastBacklog === undefined ? 'unknown (no /metrics)' : `${lastBacklog} pending`}`;

  const width = 900;
  const height = 220;
  const left = 50;
  const right = 60;
  const top = 20;
  const bottom = 30;
  const x = (at) => left + ((at - (now - windowMs)) / windowMs) * (width - left - right);
  const scale = (values) => Math.max(1, ...values);
  const rateMax = scale(rate.map(([, n]) => n));
  const backlogMax = scale(backlog.map(([, n]) => n));
  const y = (value, max) => top + (1 - value / max) * (height - top - bottom);
  const points = (series, max) => series.map(([at, n]) => `${x(at).toFixed(1)},${y(n, max).toFixed(1)}`).join(' ');

  // The newest sample of a series as a dot, so a series of one sample shows too.
  const lastPoint = (series, max, className) => {
    const last = series.at(-1);
    return last ? [svg('circle', { class: className, cx: x(last[0]), cy: y(last[1], max), r: 3 })] : [];
  };
  const chart = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Deliveries per minute (now ${lastRate}) and backlog (now ${lastBacklog ?? 'unknown'}) over the last 10 minutes`,
  });
  const base = height - bottom;
  chart.append(
    svg('line', { class: 'axis', x1: left, y1: base, x2: width - right, y2: base }),
    svg('line', { class: 'axis', x1: left, y1: top, x2: left, y2: base }),
    svg('line', { class: 'axis', x1: width - right, y1: top, x2: width - right, y2: base }),
    svg('text', { class: 'tick', x: left - 6, y: top + 4, 'text-anchor': 'end' }, String(rateMax)),
    svg('text', { class: 'tick', x: left - 6, y: base, 'text-anchor': 'end' }, '0'),
    svg('text', { class: 'tick', x: width - right + 6, y: top + 4 }, String(backlogMax)),
    svg('text', { class: 'tick', x: width - right + 6, y: base }, '0'),
    svg('text', { class: 'tick', x: left, y: height - 8 }, '−10 min'),
    svg('text', { class: 'tick', x: x(now - windowMs / 2), y: height - 8, 'text-anchor': 'middle' }, '−5 min'),
    svg('text', { class: 'tick', x: width - right, y: height - 8, 'text-anchor': 'end' }, 'now'),
    svg('polyline', { class: 'rate', points: points(rate, rateMax) }),
    svg('polyline', { class: 'backlog', points: points(backlog, backlogMax) }),
    ...lastPoint(rate, rateMax, 'legend-rate'),
    ...lastPoint(backlog, backlogMax, 'legend-backlog'),
    svg('rect', { class: 'legend-rate', x: left + 10, y: 4, width: 10, height: 10 }),
    svg('text', { class: 'tick', x: left + 24, y: 13 }, 'deliveries per minute (left axis)'),
    svg('rect', { class: 'legend-backlog', x: left + 250, y: 4, width: 10, height: 10 }),
    svg('text', { class: 'tick', x: left + 264, y: 13 }, 'backlog, pending messages (right axis)'),
  );
  $('live-chart').replaceChildren(chart);
}

// ---- start and poll ---------------------------------------------------------------

async function refreshLanding() {
  await Promise.all([list.cursor ? undefined : loadMessages(), loadJobs()]);
}

async function poll() {
  try {
    if (!document.hidden && $('key-form').hidden) {
      if (!$('landing').hidden) await refreshLanding();
      else if (detail.id) await refreshMessage();
      await sampleLive();
    }
  } catch (error) {
    if (!(error instanceof ApiError)) notify(`Live update failed: ${error.message}`);
  } finally {
    setTimeout(poll, pollMs);
  }
}

/** Shows the view the address names and loads it; the first call also starts the polling. */
async function start() {
  if (!started) {
    started = true;
    window.addEventListener('hashchange', route);
    setTimeout(poll, pollMs);
  }
  list.shown = '';
  jobsShown = '';
  route();
  await Promise.all([$('landing').hidden ? undefined : refreshLanding(), sampleLive().catch(() => {})]);
}

if (keyRequired && !sessionStorage.getItem(keyStorage)) askForKey('');
else start();
