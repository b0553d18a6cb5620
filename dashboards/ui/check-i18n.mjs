// Checks the message catalogues against the sources: every `t('…')` key in src/ has a
// Chinese translation in src/i18n/zh/, every translation keeps the key's `{name}`
// placeholders, and no catalogue entry is unused. build.mjs runs it first; `node
// check-i18n.mjs` alone prints what is wrong.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

function files(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === 'i18n' ? [] : files(p);
    // i18n.js defines t() itself.
    return p.endsWith('.js') && n !== 'i18n.js' ? [p] : [];
  });
}

/** Every literal key of t('…') / t("…") / t(`…`) (without ${}) in the sources. */
export function keys(src = 'src') {
  const out = new Map();
  const re = /\bt\(\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|`((?:[^`\\$]|\\.)*)`)/g;
  for (const f of files(src)) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(re)) {
      const raw = m[1] ?? m[2] ?? m[3];
      // Undo the JS escapes used in keys (\' \" \\ \n).
      const k = raw.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      if (!out.has(k)) out.set(k, f);
    }
    // t( with anything but a literal is a key the check cannot see.
    for (const m of text.matchAll(/\bt\(\s*([^'"`\s)])/g)) {
      const line = text.slice(0, m.index).split('\n').length;
      throw new Error(`${f}:${line}: t() needs a literal message, not an expression`);
    }
  }
  return out;
}

export async function check(src = 'src') {
  const { ZH } = await import(new URL(`./${src}/i18n/zh/index.js`, import.meta.url));
  const used = keys(src);
  const problems = [];
  const holes = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(',');
  for (const [k, f] of used) {
    if (!(k in ZH)) problems.push(`${f}: no Chinese for ${JSON.stringify(k)}`);
    else if (holes(ZH[k]) !== holes(k)) problems.push(`${f}: placeholders differ in the Chinese for ${JSON.stringify(k)}`);
    else if (ZH[k].trim() === '') problems.push(`${f}: empty Chinese for ${JSON.stringify(k)}`);
  }
  for (const k of Object.keys(ZH)) if (!used.has(k)) problems.push(`src/i18n/zh: ${JSON.stringify(k)} is not used`);
  return { problems, count: used.size };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { problems, count } = await check();
  for (const p of problems) console.error(p);
  if (problems.length) process.exit(1);
  console.log(`${count} messages, each translated`);
}
