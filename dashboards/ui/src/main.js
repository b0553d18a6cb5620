// tidegate analyst console: shell (login, navigation, time range, line), hash router and
// live polling. Pages live in pages/*.js; each exports render(ctx) and may return a
// refresh(ctx) that the shell calls every few seconds while the range ends "now".
import { get, post, setUnauthenticatedHandler } from './api.js';
import { disposeAll } from './charts.js';
import { esc, fromField, setZone, toField, tz, ZONES } from './fmt.js';
import { current, globalParams, link, me, RANGES, timeRange, update } from './state.js';
import { initLang, lang, LANGS, setLang, t } from './i18n.js';
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
import * as livePage from './pages/live.js';

// Titles are functions: the language is chosen after this module loads.
const PAGES = {
  overview: { mod: overview, title: () => t('Overview'), nav: 'overview' },
  map: { mod: map, title: () => t('Cross-border map'), nav: 'map' },
  live: { mod: livePage, title: () => t('Live traffic'), nav: 'live', always: true },
  alerts: { mod: alerts, title: () => t('Alerts'), nav: 'alerts' },
  alert: { mod: alert, title: () => t('Alert'), nav: 'alerts' },
  violations: { mod: violations, title: () => t('Policy violations'), nav: 'violations' },
  violation: { mod: violation, title: () => t('Violation'), nav: 'violations' },
  flows: { mod: flows, title: () => t('Top talkers & flows'), nav: 'flows' },
  probes: { mod: probes, title: () => t('Probe health'), nav: 'probes' },
  evidence: { mod: evidencePage, title: () => t('Evidence log'), nav: 'evidence' },
  audit: { mod: audit, title: () => t('Audit log'), nav: 'audit' },
  host: { mod: host, title: () => t('Host'), nav: 'flows' },
  incidents: { mod: incidents, title: () => t('Incidents'), nav: 'incidents' },
  collector: { mod: collectorPage, title: () => t('Collector health'), nav: 'collector', always: true },
  enforcement: { mod: enforcement, title: () => t('Enforcement'), nav: 'enforcement' },
};

/** The language menu (English / 中文). */
const langSelect = () => `<select id="lang" title="${esc(t('Language (kept in this browser)'))}">${LANGS.map(([k, name]) => `<option value="${k}" translate="no"${k === lang() ? ' selected' : ''}>${name}</option>`).join('')}</select>`;

/** A role's name in the current language. */
const roleLabel = (r) => ({ viewer: t('viewer'), analyst: t('analyst'), admin: t('admin') })[r] ?? r;

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
      <div class="muted" style="text-align:center">${t('Cross-border line monitoring')}</div>
      ${message ? `<div class="error" id="login-error">${esc(message)}</div>` : ''}
      <input name="user" id="login-user" placeholder="${esc(t('User'))}" autocomplete="username" required>
      <input name="password" id="login-password" type="password" placeholder="${esc(t('Password'))}" autocomplete="current-password" required>
      <button class="primary" type="submit" id="login-submit">${t('Log in')}</button>
      <div style="text-align:center">${langSelect()}</div>
    </form></div>`;
  document.getElementById('lang').addEventListener('change', (e) => {
    setLang(e.target.value);
    showLogin(message);
  });
  document.getElementById('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      await post('login', { user: f.get('user'), password: f.get('password') });
      await boot();
    } catch (err) {
      showLogin(err.status === 401 ? t('Wrong user name or password.') : err.message);
    }
  });
}

function shell() {
  app.innerHTML = `
    <header class="top">
      <div class="brand"><img src="/favicon.svg" alt=""> tidegate <small>${t('console')}</small></div>
      <div class="seg" id="ranges">${[...RANGES.map(([k]) => k), 'all']
        .map((k) => `<button data-range="${k}">${k === 'all' ? t('All data') : k}</button>`)
        .join('')}</div>
      <form id="custom-range" class="custom-range" title="${esc(t('A fixed range, in the chosen time zone (to the second)'))}">
        <input type="datetime-local" id="range-from" step="1" required aria-label="${esc(t('From'))}">
        <span class="muted">→</span>
        <input type="datetime-local" id="range-to" step="1" required aria-label="${esc(t('To'))}">
        <select id="tz" title="${esc(t('The time zone of every time shown (kept in this browser)'))}">${ZONES.map((z) => `<option${z === tz() ? ' selected' : ''}>${esc(z)}</option>`).join('')}</select>
        <button type="submit" id="range-apply">${t('Apply')}</button>
      </form>
      <select id="line-select" title="${esc(t('Line'))}"><option value="">${t('All lines')}</option></select>
      <span class="live" id="live"><span class="dot"></span><span id="live-text">${t('paused')}</span></span>
      <div class="spacer"></div>
      ${langSelect()}
      <span class="muted" id="whoami"><span translate="no">${esc(session.name)}</span> · <span>${esc(roleLabel(session.role))}</span></span>
      <button id="logout">${t('Log out')}</button>
    </header>
    <nav class="side" id="nav">
      <div class="sec">${t('Traffic')}</div>
      <a data-nav="overview">${t('Overview')}</a>
      <a data-nav="map">${t('Cross-border map')}</a>
      <a data-nav="live">${t('Live traffic')}</a>
      <a data-nav="flows">${esc(t('Top talkers & flows'))}</a>
      <div class="sec">${t('Threats')}</div>
      <a data-nav="incidents">${t('Incidents')}</a>
      <a data-nav="alerts">${t('Alerts')}</a>
      <a data-nav="violations">${t('Policy violations')}</a>
      <a data-nav="enforcement">${t('Enforcement')}</a>
      <div class="sec">${t('System')}</div>
      <a data-nav="probes">${t('Probe health')}</a>
      <a data-nav="collector">${t('Collector health')}</a>
      <a data-nav="evidence">${t('Evidence log')}</a>
      ${session.role === 'admin' ? `<a data-nav="audit">${t('Audit log')}</a>` : ''}
    </nav>
    <main id="main"></main>`;
  const who = document.getElementById('whoami');
  who.dataset.role = session.role;
  who.title = session.lines ? t('Sees the lines {lines} only', { lines: session.lines.join(', ') }) : t('Sees every line');
  document.getElementById('lang').addEventListener('change', (e) => {
    setLang(e.target.value);
    shell();
    route();
  });
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
    else document.getElementById('range-to').setCustomValidity(t('must be after the start')), document.getElementById('range-to').reportValidity();
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
  document.title = `${page.title()} · tidegate`;
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
    main.innerHTML = `<div class="error" translate="no">${esc(e.message)}</div>`;
    return;
  }
  if (gen !== generation) return;
  const sel = document.getElementById('line-select');
  sel.innerHTML = `<option value="">${t('All lines')}</option>${meta.lines.map((l) => `<option translate="no">${esc(l)}</option>`).join('')}`;
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
  document.getElementById('live-text').textContent = range.live ? t('live') : t('fixed range');
  main.innerHTML = '';
  const ctx = { el: main, params: c.params, id: c.id, range, meta, isCurrent: () => gen === generation };
  let refresh;
  try {
    refresh = await page.mod.render(ctx);
  } catch (e) {
    if (gen === generation) main.insertAdjacentHTML('afterbegin', `<div class="error" translate="no">${esc(e.message)}</div>`);
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
  initLang(s.lang);
  if (!s.authenticated) return showLogin();
  session = s;
  Object.assign(me, { name: s.name, role: s.role, lines: s.lines ?? null });
  shell();
  await route();
}

setUnauthenticatedHandler(() => showLogin(t('Your session ended; log in again.')));
window.addEventListener('hashchange', route);
boot().catch((e) => {
  app.innerHTML = `<div class="error">${esc(e.message)}</div>`;
});
