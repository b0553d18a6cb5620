// The Chinese catalogue, merged from one file per page or shared part.
import shell from './shell.js';
import common from './common.js';
import overview from './overview.js';
import map from './map.js';
import alerts from './alerts.js';
import incidents from './incidents.js';
import violations from './violations.js';
import flows from './flows.js';
import host from './host.js';
import probes from './probes.js';
import system from './system.js';
import enforcement from './enforcement.js';
import live from './live.js';

export const ZH = Object.assign({}, shell, common, overview, map, alerts, incidents, violations, flows, host, probes, system, enforcement, live);
