// One alert: what crossed which threshold, where, and the flows that show it.
import { get, post } from '../api.js';
import { epochMs, esc, sev, si, time } from '../fmt.js';
import { globalParams, link, can } from '../state.js';
import { evidence, evidenceBadge, facts, isAddr } from './common.js';

export async function render(ctx) {
  const a = await get(`alerts/${encodeURIComponent(ctx.id)}`);
  if (!ctx.isCurrent()) return;
  const gp = globalParams(ctx.params);
  ctx.el.innerHTML = `
    <h1><a href="${link('alerts', gp)}">Alerts</a> › ${esc(a.kind.replace(/_/g, ' '))} ${sev(a.severity)}</h1>
    <div id="evidence-badge"></div>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 12px;font-size:14px" data-testid="alert-description">${esc(a.description)}</p>
      ${facts([
        ['First', time(a.first)],
        ['Last', time(a.last)],
        ['Source', a.src + (a.src_country ? ` (${a.src_country}${a.src_asn ? ', AS' + a.src_asn : ''})` : '')],
        ['Destination', a.dst + (a.dst_country ? ` (${a.dst_country}${a.dst_asn ? ', AS' + a.dst_asn : ''})` : '')],
        ['Port', a.port ?? ''],
        ['Line', a.line],
        ['Measured', `${si(a.measured)} ${a.unit}`],
        ['Threshold', `${si(a.threshold)} ${a.unit}`],
        ['Total', a.packets == null ? '' : `${si(Number(a.packets))} packets, ${si(Number(a.bytes), 'B')}`],
        ['Key', a.key],
        ['Alert id', a.id],
        ['Version', a.version],
        ['Updated', time(a.updated_at)],
      ])}
    </div>
    ${flowsLink(a)}
    <div class="panel" style="margin-bottom:12px" data-testid="triage"><h2>Triage</h2><div id="triage"></div></div>
    <div class="panel"><h2>Evidence flows</h2>${evidence(a.evidence, gp)}</div>`;
  await triage(ctx, ctx.el.querySelector('#triage'), a.id);
  await evidenceBadge(ctx.el.querySelector('#evidence-badge'), a.id);
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
  const host = ip ? ` · <a href="${link('host', { from: from - 1800e3, to: to + 1800e3 }, ip)}" data-testid="alert-host">Host page of ${esc(ip)} →</a>` : '';
  return `<p style="margin:0 0 12px"><a href="${href}" data-testid="alert-flows">All flows of this alert${ip ? ` (${esc(ip)})` : ''} →</a>${host}</p>`;
}

/** Triage states, in the order an analyst moves through them. */
export const STATES = ['new', 'acknowledged', 'in_progress', 'closed', 'false_positive'];
export const stateBadge = (s) => `<span class="badge triage-${esc(s)}" data-testid="triage-state">${esc(s.replace(/_/g, ' '))}</span>`;

/** The alert's triage state, a form for the next action, and every action so far. */
async function triage(ctx, el, id) {
  const show = (t) => {
    const rows = t.history
      .map(
        (h) => `<tr><td>${time(h.at)}</td><td>${esc(h.user)}</td><td>${stateBadge(h.state)}</td><td>${esc(h.assignee)}</td><td class="note">${esc(h.note)}</td></tr>`,
      )
      .join('');
    el.innerHTML = `
      <p style="margin:0 0 10px">State ${stateBadge(t.triage_state)}${t.assignee ? ` · assigned to <b data-testid="triage-assignee">${esc(t.assignee)}</b>` : ''}</p>
      ${can('analyst') ? `<form class="triage-form" data-testid="triage-form">
        <select name="state" aria-label="State">${STATES.map((s) => `<option value="${s}"${s === t.triage_state ? ' selected' : ''}>${s.replace(/_/g, ' ')}</option>`).join('')}</select>
        <input name="assignee" aria-label="Assignee" placeholder="assignee" maxlength="64" value="${esc(t.assignee)}">
        <input name="note" aria-label="Note" placeholder="note (optional)" maxlength="4000" style="flex:1;min-width:240px">
        <button class="primary" type="submit">Save</button>
        <span class="error" data-testid="triage-error"></span>
      </form>` : '<p class="muted" data-testid="triage-read-only">Triage needs the analyst role: you see the history only.</p>'}
      ${
        t.history.length
          ? `<table data-testid="triage-history"><thead><tr><th>When</th><th>Who</th><th>State</th><th>Assignee</th><th>Note</th></tr></thead><tbody>${rows}</tbody></table>`
          : '<p class="muted" data-testid="triage-history-empty">No action yet.</p>'
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
  const t = await get(`alerts/${encodeURIComponent(id)}/triage`);
  if (!ctx.isCurrent()) return;
  show(t);
}
