// Countries for the map: Natural Earth 1:50m (world-atlas) as GeoJSON, each feature named
// by its ISO 3166-1 alpha-2 code (what enrichment stores), plus a label point per country.
import topo from 'world-atlas/countries-50m.json';
import { feature } from 'topojson-client';
import codes from 'i18n-iso-countries/codes.json';

const numericToAlpha2 = new Map(codes.map(([a2, , num]) => [num, a2]));

let cached = null;

/** { geojson, centers: Map(alpha2 → [lon, lat]), names: Map(alpha2 → name) }. */
export function world() {
  if (cached) return cached;
  const fc = feature(topo, topo.objects.countries);
  const centers = new Map();
  const names = new Map();
  const features = [];
  for (const f of fc.features) {
    const a2 = numericToAlpha2.get(f.id);
    // Antarctica carries no traffic and its ring spans every longitude.
    if (!a2 || a2 === 'AQ') continue;
    unwrap(f.geometry);
    names.set(a2, f.properties.name);
    centers.set(a2, center(f.geometry));
    features.push({ ...f, properties: { name: a2, title: f.properties.name } });
  }
  cached = { geojson: { type: 'FeatureCollection', features }, centers, names };
  return cached;
}

// Rings that cross the antimeridian (eastern Russia, Fiji) come as one ring jumping from
// +180 to -180; shift their western half east so they draw as one shape, not a band.
function unwrap(g) {
  const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
  for (const p of polys) {
    for (const ring of p) {
      let x0 = 180;
      let x1 = -180;
      for (const [x] of ring) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
      }
      if (x1 - x0 > 180) for (const pt of ring) if (pt[0] < 0) pt[0] += 360;
    }
  }
}

// Centre of the bounding box of the largest ring: good enough to anchor arcs and markers.
function center(g) {
  const polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
  let best = null;
  let bestArea = -1;
  for (const p of polys) {
    const ring = p[0];
    let [x0, y0, x1, y1] = [180, 90, -180, -90];
    for (const [x, y] of ring) {
      x0 = Math.min(x0, x);
      y0 = Math.min(y0, y);
      x1 = Math.max(x1, x);
      y1 = Math.max(y1, y);
    }
    const a = (x1 - x0) * (y1 - y0);
    if (a > bestArea) {
      bestArea = a;
      best = [(x0 + x1) / 2, (y0 + y1) / 2];
    }
  }
  return best;
}
