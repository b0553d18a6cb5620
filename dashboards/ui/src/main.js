// tidegate analyst console: shell (login, navigation, time range, line), hash router and
// live polling. Pages live in pages/*.js; each exports render(ctx) and may return a
// refresh(ctx) that the shell calls every few seconds while the range ends "now".
import { get, post, setUnauthenticatedHandler } from './api.js';
import { disposeAll } from './charts.js';
import { esc, fromField, setZone, toField, tz, ZONES } from './fmt.js';
import { current, globalParams, link, me, RANGES, timeRange, update } from './state.js';
import * as overview from './pages/overview.js';
import * as map from './pages/map.js';
import * as alerts from './pages/alerts.js';
import * as alert from './pages/alert.js';
import * as violations from './pages/violations.js';
import * as violation from './pages/violation.js';
import * as flows from './pages/flows.js';
import * as probes from './pages/probes.js';
import * as evidencePage from './pages/evidence.js';
import * as audit from './pages/audit.js';
import * as host from './pages/host.js';
import * as collectorPage from './pages/collector.js';
import * as incidents from './pages/incidents.js';
import * as enforcement from './pages/enforcement.js';

const PAGES = {
  overview: { mod: overview, title: 'Overview', nav: 'overview' },
  map: { mod: map, title: 'Cross-border map', nav: 'map' },
  alerts: { mod: alerts, title: 'Alerts', nav: 'alerts' },
  alert: { mod: alert, title: 'Alert', nav: 'alerts' },
  violations: { mod: violations, title: 'Policy violations', nav: 'violations' },
  violation: { mod: violation, title: 'Violation', nav: 'violations' },
  flows: { mod: flows, title: 'Top talkers & flows', nav: 'flows' },
  probes: { mod: probes, title: 'Probe health', nav: 'probes' },
  evidence: { mod: evidencePage, title: 'Evidence log', nav: 'evidence' },
  audit: { mod: audit, title: 'Audit log', nav: 'audit' },
  host: { mod: host, title: 'Host', nav: 'flows' },
  incidents: { mod: incidents, title: 'Incidents', nav: 'incidents' },
  collector: { mod: collectorPage, title: 'Collector health', nav: 'collector', always: true },
  enforcement: { mod: enforcement, title: 'Enforcement', nav: 'enforcement' },
};

const POLL_MS = 10_000;
const app = document.getElementById('app');
let session = null;
let timer = null;
let generation = 0;

function showLogin(message) {
  clearInterval(timer);
  disposeAll();
  session = null;
  app.innerHTML = `
    <div class="login"><form id="login-form" autocomplete="on">
      <h1><img src="/favicon.svg" width="26" height="26" alt=""> tidegate</h1>
      <div class="muted" style="text-align:center">Cross-border line monitoring</div>
      ${message ? `<div class="error" id="login-error">${esc(message)}</div>` : ''}
      <input name="user" id="login-user" placeholder="User" autocomplete="username" required>
      <input name="password" id="login-password" type="password" placeholder="Password" autocomplete="current-password" required>
      <button class="primary" type="submit" id="login-submit">Log in</button>
    </form></div>`;
  document.getElementById('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      await post('login', { user: f.get('user'), password: f.get('password') });
      await boot();
    } catch (err) {
      showLogin(err.status === 401 ? 'Wrong user name or password.' : err.message);
    }
  });
}

function shell() {
  app.innerHTML = `
    <header class="top">
      <div class="brand"><img src="/favicon.svg" alt=""> tidegate <small>console</small></div>
      <div class="seg" id="ranges">${[...RANGES.map(([k]) => k), 'all']
        .map((k) => `<button data-range="${k}">${k === 'all' ? 'All data' : k}</button>`)
        .join('')}</div>
      <form id="custom-range" class="custom-range" title="A fixed range, in the chosen time zone (to the second)">
        <input type="datetime-local" id="range-from" step="1" required aria-label="From">
        <span class="muted">→</span>
        <input type="datetime-local" id="range-to" step="1" required aria-label="To">
        <select id="tz" title="The time zone of every time shown (kept in this browser)">${ZONES.map((z) => `<option${z === tz() ? ' selected' : ''}>${esc(z)}</option>`).join('')}</select>
        <button type="submit" id="range-apply">Apply</button>
      </form>
      <select id="line-select" title="Line"><option value="">All lines</option></select>
      <span class="live" id="live"><span class="dot"></span><span id="live-text">paused</span></span>
      <div class="spacer"></div>
      <span class="muted" id="whoami"></span>
      <button id="logout">Log out</button>
    </header>
    <nav class="side" id="nav">
      <div class="sec">Traffic</div>
      <a data-nav="overview">Overview</a>
      <a data-nav="map">Cross-border map</a>
      <a data-nav="flows">Top talkers &amp; flows</a>
      <div class="sec">Threats</div>
      <a data-nav="incidents">Incidents</a>
      <a data-nav="alerts">Alerts</a>
      <a data-nav="violations">Policy violations</a>
      <a data-nav="enforcement">Enforcement</a>
      <div class="sec">System</div>
      <a data-nav="probes">Probe health</a>
      <a data-nav="collector">Collector health</a>
      <a data-nav="evidence">Evidence log</a>
      ${session.role === 'admin' ? '<a data-nav="audit">Audit log</a>' : ''}
    </nav>
    <main id="main"></main>`;
  const who = document.getElementById('whoami');
  who.textContent = `${session.name} · ${session.role}`;
  who.dataset.role = session.role;
  who.title = session.lines ? `Sees the lines ${session.lines.join(', ')} only` : 'Sees every line';
  document.getElementById('logout').addEventListener('click', async () => {
    await post('logout', {});
    showLogin();
  });
  document.getElementById('ranges').addEventListener('click', (e) => {
    const r = e.target.dataset.range;
    if (r) update({ range: r, from: null, to: null, offset: null });
  });
  document.getElementById('custom-range').addEventListener('submit', (e) => {
    e.preventDefault();
    const ms = (id) => fromField(document.getElementById(id).value);
    const from = ms('range-from');
    const to = ms('range-to');
    if (Number.isFinite(from) && Number.isFinite(to) && from < to) update({ from, to, range: null, offset: null });
    else document.getElementById('range-to').setCustomValidity('must be after the start'), document.getElementById('range-to').reportValidity();
  });
  document.getElementById('range-to').addEventListener('input', (e) => e.target.setCustomValidity(''));
  document.getElementById('tz').addEventListener('change', (e) => {
    setZone(e.target.value);
    route();
  });
  document.getElementById('line-select').addEventListener('change', (e) => update({ line: e.target.value, offset: null }));
}

async function route() {
  if (!session) return;
  const gen = ++generation;
  clearInterval(timer);
  disposeAll();
  const c = current();
  const page = PAGES[c.page] ?? PAGES.overview;
  document.title = `${page.title} · tidegate`;
  const g = globalParams(c.params);
  for (const a of document.querySelectorAll('#nav a')) {
    a.href = link(a.dataset.nav, g);
    a.classList.toggle('active', a.dataset.nav === page.nav);
  }
  const activeRange = c.params.from && c.params.to ? null : c.params.range || '1h';
  for (const b of document.querySelectorAll('#ranges button')) b.classList.toggle('on', b.dataset.range === activeRange);
  const main = document.getElementById('main');
  let meta;
  try {
    meta = await get('meta');
  } catch (e) {
    main.innerHTML = `<div class="error">${esc(e.message)}</div>`;
    return;
  }
  if (gen !== generation) return;
  const sel = document.getElementById('line-select');
  sel.innerHTML = `<option value="">All lines</option>${meta.lines.map((l) => `<option>${esc(l)}</option>`).join('')}`;
  sel.value = c.params.line ?? '';
  const range = timeRange(c.params, meta);
  // The custom-range fields show the range in view (in the zone, to the second).
  const field = (v) => {
    const ms = typeof v === 'number' ? v : Date.parse(v);
    return Number.isNaN(ms) ? '' : toField(ms);
  };
  document.getElementById('range-from').value = field(range.from);
  document.getElementById('range-to').value = field(range.to);
  const liveEl = document.getElementById('live');
  liveEl.classList.toggle('on', range.live);
  document.getElementById('live-text').textContent = range.live ? 'live' : 'fixed range';
  main.innerHTML = '';
  const ctx = { el: main, params: c.params, id: c.id, range, meta, isCurrent: () => gen === generation };
  let refresh;
  try {
    refresh = await page.mod.render(ctx);
  } catch (e) {
    if (gen === generation) main.insertAdjacentHTML('afterbegin', `<div class="error">${esc(e.message)}</div>`);
    return;
  }
  if ((range.live || page.always) && refresh && gen === generation) {
    timer = setInterval(async () => {
      if (gen !== generation || document.hidden) return;
      try {
        await refresh({ ...ctx, range: timeRange(c.params, meta) });
      } catch (e) {
        if (e.status !== 401) console.warn('refresh failed', e.message);
      }
    }, POLL_MS);
  }
}

async function boot() {
  const s = await get('session');
  if (!s.authenticated) return showLogin();
  session = s;
  Object.assign(me, { name: s.name, role: s.role, lines: s.lines ?? null });
  shell();
  await route();
}

setUnauthenticatedHandler(() => showLogin('Your session ended; log in again.'));
window.addEventListener('hashchange', route);
boot().catch((e) => {
  app.innerHTML = `<div class="error">${esc(e.message)}</div>`;
});
