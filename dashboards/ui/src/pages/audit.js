// Audit log (admins): logins, refused logins, logouts, triage actions, exports and
// manual blocks — who, from where, on what — newest first, filtered by action and user.
import { get } from '../api.js';
import { esc, int, time } from '../fmt.js';
import { t } from '../i18n.js';
import { can, update } from '../state.js';
import { chips, pager } from './common.js';

const LIMIT = 100;
const ACTIONS = ['login', 'login_refused', 'logout', 'triage', 'export', 'block', 'unblock', 'filter_save', 'filter_delete'];

/** An action's name in the current language. */
const actionLabel = (a) =>
  ({
    login: t('login'),
    login_refused: t('login refused'),
    logout: t('logout'),
    triage: t('triage'),
    export: t('export'),
    block: t('block'),
    unblock: t('unblock'),
    filter_save: t('filter saved'),
    filter_delete: t('filter deleted'),
  })[a] ?? a.replace(/_/g, ' ');

export async function render(ctx) {
  const p = ctx.params;
  if (!can('admin')) {
    ctx.el.innerHTML = `<h1>${t('Audit log')}</h1><div class="empty" data-testid="audit-forbidden">${t('The audit log needs the admin role.')}</div>`;
    return null;
  }
  ctx.el.innerHTML = `
    <h1>${t('Audit log')} <span class="sub" id="au-total"></span></h1>
    <div class="panel">
      <div class="toolbar"><label>${t('Action')}</label><div class="chips" id="f-action"></div>
        <label>${t('User')} <input id="f-user" size="16" value="${esc(p.user ?? '')}"></label><button id="f-apply">${t('Apply')}</button></div>
      <div style="overflow-x:auto"><table id="audit-table"><thead><tr><th>${t('When')}</th><th>${t('User')}</th><th>${t('Action')}</th><th>${t('Client')}</th><th>${t('Target')}</th><th>${t('Detail')}</th></tr></thead><tbody></tbody></table></div>
      <div class="pager" id="pager"></div>
    </div>`;
  chips(ctx.el.querySelector('#f-action'), 'action', ACTIONS, p.action, actionLabel);
  ctx.el.querySelector('#f-apply').addEventListener('click', () => update({ user: ctx.el.querySelector('#f-user').value.trim(), offset: null }));
  const refresh = async (c) => {
    // "All data" is the stored traffic's extent; the audit trail is about now: the last ten years.
    const r = c.params.range === 'all' ? { from: Date.now() - 10 * 366 * 86400e3, to: Date.now() + 60e3 } : c.range;
    const offset = Number(p.offset) || 0;
    const list = await get('audit', { from: r.from, to: r.to, user: p.user, action: p.action, limit: LIMIT, offset });
    if (!c.isCurrent()) return;
    const total = c.el.querySelector('#au-total');
    total.textContent = t('{n} records', { n: int(list.total) });
    total.dataset.value = list.total;
    c.el.querySelector('#audit-table tbody').innerHTML = list.items.length
      ? list.items
          .map(
            (a) => `<tr data-action="${esc(a.action)}" data-user="${esc(a.user)}"><td>${esc(time(a.at))}</td><td translate="no">${esc(a.user)}</td>
          <td><span class="badge audit-${esc(a.action)}">${esc(actionLabel(a.action))}</span></td><td class="mono">${esc(a.client)}</td>
          <td class="mono" translate="no">${esc(a.target)}</td><td class="note" translate="no">${esc(a.detail)}</td></tr>`,
          )
          .join('')
      : `<tr><td colspan="6" class="empty">${t('No record in this time range.')}</td></tr>`;
    pager(c.el.querySelector('#pager'), list.total, LIMIT, offset);
  };
  await refresh(ctx);
  return refresh;
}
