import { can } from '../state.js';
// Enforcement at the lines: the policy version the collector publishes and which version
// each probe enforces, per-rule counters (dropped / would drop) and the top dropped
// sources for the selected range, and manual blocks for incident response.
import { ApiError, del, get, post } from '../api.js';
import { bytes, esc, int, time } from '../fmt.js';
import { t } from '../i18n.js';

/** A mode's name in the current language. */
const modeLabel = (m) => ({ monitor: t('monitor'), enforce: t('enforce') })[m] ?? m;
/** A verdict's name in the current language. */
const verdictLabel = (v) => ({ pass: t('pass'), would_drop: t('would drop'), dropped: t('dropped') })[v] ?? v;
/** Why the plan was published. */
const causeLabel = (c) => ({ start: t('start'), block: t('block'), unblock: t('unblock'), expiry: t('expiry'), reload: t('reload') })[c] ?? c;

export async function render(ctx) {
  let st;
  try {
    st = await get('enforce/status');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      ctx.el.innerHTML = `<h1>${t('Enforcement')}</h1><div class="empty">${t('This collector has no policy ([policy] file), so nothing is enforced at the lines.')}</div>`;
      return;
    }
    throw e;
  }
  if (!ctx.isCurrent()) return;
  ctx.el.innerHTML = `
    <h1>${t('Enforcement')} <span class="sub" id="enf-plan"></span></h1>
    <div class="grid cols-2">
      <div class="panel"><h2>${t('Policy at the lines')}</h2><div id="enf-status"></div></div>
      <div class="panel"><h2>${t('Manual blocks')}</h2>
        ${can('admin') ? '' : `<p class="muted" data-testid="blocks-read-only">${t('Placing and lifting blocks needs the admin role.')}</p>`}
        <form id="block-form" class="toolbar"${can('admin') ? '' : ' hidden'}>
          <input id="block-cidr" placeholder="${esc(t('CIDR, e.g. 203.0.113.7/32'))}" size="22" required>
          <label>${t('for')} <input id="block-minutes" type="number" min="1" max="43200" value="60" style="width:6em"> min</label>
          <input id="block-reason" placeholder="${esc(t('Reason (kept as evidence)'))}" size="24">
          <button class="primary" type="submit">${t('Block')}</button>
        </form>
        <div class="error" id="block-error" hidden></div>
        <div id="blocks"></div>
      </div>
    </div>
    <div class="grid cols-2" style="margin-top:12px">
      <div class="panel"><h2>${t('Per rule')}</h2><div style="overflow-x:auto"><table data-testid="enforce-rules"><thead><tr>
        <th>${t('Rule')}</th><th>${t('Verdict')}</th><th class="num">${t('Flows')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Bytes')}</th><th class="num">${t('Sources')}</th><th>${t('Last seen')}</th>
      </tr></thead><tbody></tbody></table></div></div>
      <div class="panel"><h2>${t('Top dropped sources')}</h2><div style="overflow-x:auto"><table data-testid="enforce-top"><thead><tr>
        <th>${t('Source')}</th><th>${t('Verdict')}</th><th>${t('Rules')}</th><th class="num">${t('Flows')}</th><th class="num">${t('Packets')}</th><th class="num">${t('Bytes')}</th>
      </tr></thead><tbody></tbody></table></div></div>
    </div>`;
  const form = ctx.el.querySelector('#block-form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const err = ctx.el.querySelector('#block-error');
    err.hidden = true;
    try {
      await post('enforce/blocks', {
        cidr: ctx.el.querySelector('#block-cidr').value.trim(),
        expires_secs: Math.round(Number(ctx.el.querySelector('#block-minutes').value) * 60),
        reason: ctx.el.querySelector('#block-reason').value,
      });
      form.reset();
      await refresh(ctx);
    } catch (x) {
      err.textContent = x.message;
      err.hidden = false;
    }
  });
  const refresh = async (c) => {
    const q = { from: c.range.from, to: c.range.to, line: c.params.line };
    const [s, r] = await Promise.all([get('enforce/status'), get('enforce/rules', q)]);
    if (!c.isCurrent()) return;
    draw(c, s, r);
  };
  await refresh(ctx);
  return refresh;
}

function draw(ctx, s, r) {
  const el = ctx.el;
  const p = s.plan;
  el.querySelector('#enf-plan').textContent = t('policy version {v} · {cause}', { v: p.version, cause: causeLabel(p.cause) });
  const probes = Object.entries(s.probes);
  el.querySelector('#enf-status').innerHTML = `
    <table class="facts"><tbody>
      <tr><th>${t('Published')}</th><td>${esc(time(p.published_ns / 1e6))}</td></tr>
      <tr><th>${t('Default mode')}</th><td data-testid="enforce-mode">${esc(modeLabel(p.default_mode))}</td></tr>
      <tr><th>${t('Lines')}</th><td>${p.lines.length ? p.lines.map(([n, m]) => `<span translate="no">${esc(n)}</span>: ${esc(modeLabel(m))}`).join(', ') : t('all in the default mode')}</td></tr>
      <tr><th>${t('Dropping rules')}</th><td class="mono" translate="no">${p.drop_rules.length ? p.drop_rules.map(esc).join(', ') : t('none')}</td></tr>
      <tr><th>${t('Prefixes')}</th><td>${int(p.prefixes)}</td></tr>
    </tbody></table>
    <table data-testid="enforce-probes" style="margin-top:8px"><thead><tr><th>${t('Probe')}</th><th>${t('Enforces')}</th><th>${t('Connected')}</th><th class="num">${t('Applied after')}</th><th>${t('Problem')}</th></tr></thead><tbody>
    ${
      probes.length
        ? probes
            .map(
              ([id, e]) => `<tr><td class="mono" translate="no">${esc(id)}</td>
        <td>${e.version === p.version ? `<span class="ok">${t('current')}</span>` : e.version ? t('older ({v})', { v: e.version }) : t('nothing')}</td>
        <td>${e.connected ? t('yes') : t('{no} (keeps its last plan while running; passes everything once stopped)', { no: `<b>${t('no')}</b>` })}</td>
        <td class="num">${e.applied_after_secs == null ? '–' : (e.applied_after_secs * 1000).toFixed(0) + ' ms'}</td>
        <td>${e.failed ? `${esc(t('version {v}:', { v: e.failed[0] }))} <span translate="no">${esc(e.failed[1])}</span>` : ''}</td></tr>`,
            )
            .join('')
        : `<tr><td colspan="5" class="muted">${t('No probe enforces (probes need {setting}).', { setting: '<code translate="no">[ebpf] enforce = true</code>' })}</td></tr>`
    }</tbody></table>`;
  const blocks = s.blocks;
  el.querySelector('#blocks').innerHTML = blocks.length
    ? `<table data-testid="enforce-blocks"><thead><tr><th>${t('Range')}</th><th>${t('Until')}</th><th>${t('By')}</th><th>${t('Reason')}</th><th></th></tr></thead><tbody>
      ${blocks
        .map(
          (b) => `<tr><td class="mono">${esc(b.cidr)}</td><td>${esc(time(b.expires_ns / 1e6))}</td><td translate="no">${esc(b.created_by)}</td>
        <td translate="no">${esc(b.reason)}</td><td>${can('admin') ? `<button data-lift="${esc(b.id)}">${t('Lift')}</button>` : ''}</td></tr>`,
        )
        .join('')}</tbody></table>`
    : `<div class="muted">${t('No manual blocks.')}</div>`;
  for (const b of el.querySelectorAll('[data-lift]')) {
    b.addEventListener('click', async () => {
      await del(`enforce/blocks/${encodeURIComponent(b.dataset.lift)}`);
      const s2 = await get('enforce/status');
      draw(ctx, s2, r);
    });
  }
  el.querySelector('[data-testid="enforce-rules"] tbody').innerHTML = r.rules.length
    ? r.rules
        .map(
          (x) => `<tr><td class="mono" translate="no">${esc(x.rule)}</td><td>${esc(verdictLabel(x.verdict))}</td><td class="num">${int(x.flows)}</td>
      <td class="num" data-value="${esc(x.packets)}">${int(x.packets)}</td><td class="num">${bytes(x.bytes)}</td>
      <td class="num">${int(x.sources)}</td><td>${esc(time(x.last_seen))}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="7" class="muted">${t('Nothing dropped or counted as would-drop in this range.')}</td></tr>`;
  el.querySelector('[data-testid="enforce-top"] tbody').innerHTML = r.top_sources.length
    ? r.top_sources
        .map(
          (x) => `<tr><td class="mono">${esc(x.src.replace(/^::ffff:/, ''))}</td><td>${esc(verdictLabel(x.verdict))}</td>
      <td class="mono" translate="no">${x.rules.map(esc).join(', ')}</td><td class="num">${int(x.flows)}</td>
      <td class="num">${int(x.packets)}</td><td class="num">${bytes(x.bytes)}</td></tr>`,
        )
        .join('')
    : `<tr><td colspan="6" class="muted">${t('No dropped sources in this range.')}</td></tr>`;
}
