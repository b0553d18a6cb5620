// The console's languages. English strings in the source are the message keys; a
// catalogue per other language maps each to its translation (i18n/zh/*.js, one file per
// page or shared part). `t('Alerts')`, `t('{n} records', { n })`. The language is the
// one chosen in the header (kept in this browser), else the user's configured `lang`,
// else the browser's. A key without a translation shows in English and is recorded in
// `window.__tidegateI18n.missing` (the browser tests require it to stay empty).
import { ZH } from './i18n/zh/index.js';

export const LANGS = [
  ['en', 'English'],
  ['zh', '中文'],
];
const CATALOGUES = { zh: ZH };
const KEY = 'tidegate.lang';
let current = 'en';
const missing = new Set();
window.__tidegateI18n = { missing, catalogue: CATALOGUES };

/** The language in use: 'en' or 'zh'. */
export const lang = () => current;

/** Chooses the language: the header's choice, else the user's, else the browser's. */
export function initLang(userLang) {
  let stored = null;
  try {
    stored = localStorage.getItem(KEY);
  } catch {
    stored = null;
  }
  const browser = (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  apply(stored || userLang || browser);
}

/** Switches language (kept in this browser). */
export function setLang(l) {
  try {
    localStorage.setItem(KEY, l);
  } catch {
    // private mode: the choice lasts for this page only
  }
  apply(l);
}

function apply(l) {
  current = LANGS.some(([k]) => k === l) ? l : 'en';
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
}

/** The message `s` in the current language, with `{name}` replaced from `vars`. */
export function t(s, vars) {
  let out = s;
  if (current !== 'en') {
    const c = CATALOGUES[current][s];
    if (c === undefined) missing.add(s);
    else out = c;
  }
  return vars ? out.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : out;
}
