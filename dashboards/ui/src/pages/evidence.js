// The evidence log: its signed checkpoints (newest first) and the key they verify with.
import { ApiError, get } from '../api.js';
import { esc, int, time } from '../fmt.js';
import { t } from '../i18n.js';

export async function render(ctx) {
  let c;
  try {
    c = await get('evidence/checkpoints');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      ctx.el.innerHTML = `<h1>${t('Evidence log')}</h1><div class="empty">${t('This collector keeps no evidence log (no [evidence] section).')}</div>`;
      return;
    }
    throw e;
  }
  if (!ctx.isCurrent()) return;
  const rows = [...c.checkpoints]
    .reverse()
    .map(
      (k) => `<tr><td>${esc(time(k.time_ns / 1e6))}</td><td class="num">${int(k.size)}</td>
        <td><details><summary class="muted">${t('signed note')}</summary><pre class="json" translate="no">${esc(k.note)}</pre></details></td></tr>`,
    )
    .join('');
  ctx.el.innerHTML = `<h1>${t('Evidence log')} <span class="sub"><span translate="no">${esc(c.origin)}</span> · ${t('{n} entries', { n: int(c.entries) })} · ${t('{n} checkpoints', { n: int(c.checkpoints.length) })}</span></h1>
    <div class="panel" style="margin-bottom:12px">
      <p style="margin:0 0 8px">${t('Every alert and violation state, probe connection, reload and stored-flows digest is appended to a Merkle log (RFC 6962); each checkpoint below is a signed tree head (C2SP signed note, Ed25519). Auditors check a finding\'s bundle with {script} and this public key; consistency between two checkpoints: {url}.', {
        script: '<code translate="no">dashboards/evidence/verify_bundle.py</code>',
        url: '<code translate="no">/api/v1/evidence/consistency?old=M&amp;new=N</code>',
      })}</p>
      <pre class="json" data-testid="evidence-key" translate="no">${esc(c.public_key_pem)}</pre>
      <div class="muted">${t('Verifier key:')} <span class="mono" translate="no">${esc(c.verifier_key)}</span></div>
    </div>
    <div class="panel"><h2>${t('Checkpoints')}</h2><div class="scroll"><table data-testid="checkpoints">
      <thead><tr><th>${t('Signed')}</th><th class="num">${t('Entries')}</th><th>${t('Note')}</th></tr></thead><tbody>${rows}</tbody></table></div></div>`;
}
