// One alert: what crossed which threshold, where, and the flows that show it.
import { get, post } from '../api.js';
import { epochMs, esc, sev, si, time } from '../fmt.js';
import { globalParams, link, can } from '../state.js';
import { described, endpointText, evidence, evidenceBadge, facts, isAddr } from './common.js';
import { lang, t } from '../i18n.js';

/** An alert kind's name in the current language (English: the kind with spaces). */
export const kindLabel = (k) =>
  ({
    port_scan: t('port scan'),
    host_sweep: t('host sweep'),
    syn_flood: t('syn flood'),
    volumetric: t('volumetric'),
    amplification: t('amplification'),
    exfiltration: t('exfiltration'),
    beaconing: t('beaconing'),
    dns_tunnel: t('dns tunnel'),
    icmp_tunnel: t('icmp tunnel'),
    surge: t('surge'),
    upload: t('upload'),
    data_quarantined: t('data quarantined'),
  })[k] ?? String(k ?? '').replace(/_/g, ' ');

/** An alert kind where a page names it as the server does: the raw name in English, else its label. */
export const kindText = (k) => (lang() === 'en' ? k : kindLabel(k));

/** A triage state's name in the current language (English: the state with spaces). */
export const stateLabel = (s) =>
  ({
    new: t('new'),
    acknowledged: t('acknowledged'),
    in_progress: t('in progress'),
    closed: t('closed'),
    false_positive: t('false positive'),
  })[s] ?? String(s ?? '').replace(/_/g, ' ');

/** The unit of an alert's measure in the current language; null when it has no label. */
const unitName = (u) =>
  ({
    records: t('records'),
    ports: t('ports'),
    hosts: t('hosts'),
    bytes: t('bytes'),
    'distinct names': t('distinct names'),
    'jitter (cv)': t('jitter (cv)'),
  })[u] ?? null;

/** A unit as text (for escaped contexts): its label, else itself. */
export const unitLabel = (u) => unitName(u) ?? u ?? '';

/** A unit as HTML: its label, else itself marked as data (not to be translated). */
export const unitHtml = (u) => {
  const n = unitName(u);
  return n === null ? `<span translate="no">${esc(u)}</span>` : esc(n);
};

/** An alert's description in the current language (see `described`). */
export function alertSummary(a) {
  const port = a.port ? `:${a.port}` : '';
  return described(
    a.description,
    t('{kind}: {src} → {dst}, {measured} against a threshold of {threshold}.', {
      kind: esc(kindLabel(a.kind)),
      src: `<span translate="no">${esc(endpointText(a.src))}</span>`,
      dst: `<span translate="no">${esc(endpointText(a.dst))}${esc(port)}</span>`,
      measured: `${si(a.measured)} ${esc(unitLabel(a.unit))}`,
      threshold: `${si(a.threshold)} ${esc(unitLabel(a.unit))}`,
    }),
  );
}

export async function render(ctx) {
  const a = await get(`alerts/${encodeURIComponent(ctx.id)}`);
  if (!ctx.isCurrent()) return;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1><a href="${link('alerts', gp)}">${t('Alerts')}</a> › ${esc(kindLabel(a.kind))} ${sev(a.severity)}</h1>
    <div id="evidence-badge"></div>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 12px;font-size:14px" data-testid="alert-description">${alertSummary(a)}</p>
      ${facts([
        [t('First'), time(a.first)],
        [t('Last'), time(a.last)],
        [t('Source'), endpointText(a.src) + (a.src_country ? ` (${a.src_country}${a.src_asn ? ', AS' + a.src_asn : ''})` : '')],
        [t('Destination'), endpointText(a.dst) + (a.dst_country ? ` (${a.dst_country}${a.dst_asn ? ', AS' + a.dst_asn : ''})` : '')],
        [t('Port'), a.port ?? ''],
        [t('Line'), a.line],
        [t('Measured'), `${si(a.measured)} ${unitLabel(a.unit)}`],
        [t('Threshold'), `${si(a.threshold)} ${unitLabel(a.unit)}`],
        [t('Total'), a.packets == null ? '' : t('{packets} packets, {bytes}', { packets: si(Number(a.packets)), bytes: si(Number(a.bytes), 'B') })],
        [t('Key'), a.key],
        [t('Alert id'), a.id],
        [t('Version'), a.version],
        [t('Updated'), time(a.updated_at)],
      ])}
    </div>
    ${flowsLink(a)}
    <div class="panel" style="margin-bottom:12px" data-testid="triage"><h2>${t('Triage')}</h2><div id="triage"></div></div>
    <div class="panel"><h2>${t('Evidence flows')}</h2>${evidence(a.evidence, gp)}</div>`;
  // Triage and the evidence log's answer are independent: ask for both at once.
  await Promise.all([triage(ctx, ctx.el.querySelector('#triage'), a.id), evidenceBadge(ctx.el.querySelector('#evidence-badge'), a.id)]);
}


/**
 * A link to every flow of the alert: its line, from its first to its last packet, to or
 * from its target (else its source) — not only the evidence sample.
 */
function flowsLink(a) {
  const ip = isAddr(a.dst) ? a.dst : isAddr(a.src) ? a.src : '';
  const from = epochMs(a.first);
  const to = epochMs(a.last);
  if (from === null || to === null) return '';
  const href = link('flows', { from, to: to + 1, line: a.line, ip });
  // The target's host page: an hour around the alert, every line.
  const host = ip ? ` · <a href="${link('host', { from: from - 1800e3, to: to + 1800e3 }, ip)}" data-testid="alert-host">${t('Host page of {ip} →', { ip: esc(ip) })}</a>` : '';
  return `<p style="margin:0 0 12px"><a href="${href}" data-testid="alert-flows">${ip ? t('All flows of this alert ({ip}) →', { ip: esc(ip) }) : t('All flows of this alert →')}</a>${host}</p>`;
}

/** Triage states, in the order an analyst moves through them. */
export const STATES = ['new', 'acknowledged', 'in_progress', 'closed', 'false_positive'];
export const stateBadge = (s) => `<span class="badge triage-${esc(s)}" data-testid="triage-state">${esc(stateLabel(s))}</span>`;

/** The alert's triage state, a form for the next action, and every action so far. */
async function triage(ctx, el, id) {
  const show = (tr) => {
    const rows = tr.history
      .map(
        (h) => `<tr><td>${time(h.at)}</td><td translate="no">${esc(h.user)}</td><td>${stateBadge(h.state)}</td><td translate="no">${esc(h.assignee)}</td><td class="note" translate="no">${esc(h.note)}</td></tr>`,
      )
      .join('');
    el.innerHTML = `
      <p style="margin:0 0 10px">${t('State {state}', { state: stateBadge(tr.triage_state) })}${tr.assignee ? t(' · assigned to {assignee}', { assignee: `<b data-testid="triage-assignee" translate="no">${esc(tr.assignee)}</b>` }) : ''}</p>
      ${can('analyst') ? `<form class="triage-form" data-testid="triage-form">
        <select name="state" aria-label="${esc(t('State'))}">${STATES.map((s) => `<option value="${s}"${s === tr.triage_state ? ' selected' : ''}>${esc(stateLabel(s))}</option>`).join('')}</select>
        <input name="assignee" aria-label="${esc(t('Assignee'))}" placeholder="${esc(t('assignee'))}" maxlength="64" value="${esc(tr.assignee)}">
        <input name="note" aria-label="${esc(t('Note'))}" placeholder="${esc(t('note (optional)'))}" maxlength="4000" style="flex:1;min-width:240px">
        <button class="primary" type="submit">${t('Save')}</button>
        <span class="error" data-testid="triage-error" translate="no"></span>
      </form>` : `<p class="muted" data-testid="triage-read-only">${t('Triage needs the analyst role: you see the history only.')}</p>`}
      ${
        tr.history.length
          ? `<table data-testid="triage-history"><thead><tr><th>${t('When')}</th><th>${t('Who')}</th><th>${t('State')}</th><th>${t('Assignee')}</th><th>${t('Note')}</th></tr></thead><tbody>${rows}</tbody></table>`
          : `<p class="muted" data-testid="triage-history-empty">${t('No action yet.')}</p>`
      }`;
    el.querySelector('form')?.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const body = { state: f.get('state'), assignee: f.get('assignee') };
      if (f.get('note')) body.note = f.get('note');
      try {
        show(await post(`alerts/${encodeURIComponent(id)}/triage`, body));
      } catch (e) {
        el.querySelector('[data-testid=triage-error]').textContent = e.message;
      }
    });
  };
  const tr = await get(`alerts/${encodeURIComponent(id)}/triage`);
  if (!ctx.isCurrent()) return;
  show(tr);
}
