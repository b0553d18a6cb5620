// Audit log (admins): logins, refused logins, logouts, triage actions, exports and
// manual blocks — who, from where, on what — newest first, filtered by action and user.
import { get } from '../api.js';
import { esc, int, time } from '../fmt.js';
import { can, update } from '../state.js';
import { chips, pager } from './common.js';

const LIMIT = 100;
const ACTIONS = ['login', 'login_refused', 'logout', 'triage', 'export', 'block', 'unblock'];

export async function render(ctx) {
  const p = ctx.params;
  if (!can('admin')) {
    ctx.el.innerHTML = '<h1>Audit log</h1><div class="empty" data-testid="audit-forbidden">The audit log needs the admin role.</div>';
    return null;
  }
  ctx.el.innerHTML = `
    <h1>Audit log <span class="sub" id="au-total"></span></h1>
    <div class="panel">
      <div class="toolbar"><label>Action</label><div class="chips" id="f-action"></div>
        <label>User <input id="f-user" size="16" value="${esc(p.user ?? '')}"></label><button id="f-apply">Apply</button></div>
      <div style="overflow-x:auto"><table id="audit-table"><thead><tr><th>When</th><th>User</th><th>Action</th><th>Client</th><th>Target</th><th>Detail</th></tr></thead><tbody></tbody></table></div>
      <div class="pager" id="pager"></div>
    </div>`;
  chips(ctx.el.querySelector('#f-action'), 'action', ACTIONS, p.action);
  ctx.el.querySelector('#f-apply').addEventListener('click', () => update({ user: ctx.el.querySelector('#f-user').value.trim(), offset: null }));
  const refresh = async (c) => {
    // "All data" is the stored traffic's extent; the audit trail is about now: all time.
    const r = c.params.range === 'all' ? { from: 0, to: Date.now() + 60e3 } : c.range;
    const offset = Number(p.offset) || 0;
    const list = await get('audit', { from: r.from, to: r.to, user: p.user, action: p.action, limit: LIMIT, offset });
    if (!c.isCurrent()) return;
    const t = c.el.querySelector('#au-total');
    t.textContent = `${int(list.total)} records`;
    t.dataset.value = list.total;
    c.el.querySelector('#audit-table tbody').innerHTML = list.items.length
      ? list.items
          .map(
            (a) => `<tr data-action="${esc(a.action)}" data-user="${esc(a.user)}"><td>${esc(time(a.at))}</td><td>${esc(a.user)}</td>
          <td><span class="badge audit-${esc(a.action)}">${esc(a.action.replace(/_/g, ' '))}</span></td><td class="mono">${esc(a.client)}</td>
          <td class="mono">${esc(a.target)}</td><td class="note">${esc(a.detail)}</td></tr>`,
          )
          .join('')
      : '<tr><td colspan="6" class="empty">No record in this time range.</td></tr>';
    pager(c.el.querySelector('#pager'), list.total, LIMIT, offset);
  };
  await refresh(ctx);
  return refresh;
}
