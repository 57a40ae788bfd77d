// cityops map page (一张图): Leaflet (vendored) on a canvas renderer, so ten thousand
// markers draw in one pass. The marker set comes from GET /api/v1/map; after the first
// render, server-sent events (GET /api/v1/map/live) carry only what changed.
// Nothing is loaded from outside the hub except the configured tile server's images.
"use strict";
(function () {
  const el = document.getElementById("map");
  if (!el) return;
  const status = document.getElementById("map-status");
  // phases: when (performance.now(), ms since the navigation began) each step ended.
  const api = { firstRenderMs: null, markers: 0, updates: 0, snapshot: 0, error: null,
                phases: { script: performance.now() } };
  window.cityopsMap = api;

  // The page's messages in its language: app.js's translator (it runs first).
  const t = window.cityopsT;
  function say(text) { if (status) status.textContent = text; }
  if (!window.L) {
    api.error = "Leaflet did not load";
    say(t("map_no_library"));
    return;
  }

  const STATE_FILL = {
    new: "#2563eb", accepted: "#2563eb", dispatched: "#7c3aed", in_progress: "#0e7490",
    escalated: "#dc2626", resolved: "#d97706", reopened: "#db2777",
  };
  // Command level (escalation): 0 the grid's own, 1 town, 2 district, 3 city.
  const LEVEL_RING = [["#ffffff", 1], ["#eab308", 3], ["#f97316", 3.5], ["#7f1d1d", 4]];
  const GRID_FILL = { normal: "#94a3b8", blue: "#3b82f6", yellow: "#facc15", orange: "#f97316", red: "#dc2626" };

  function markerStyle(m) {
    if (m.kind === "case") {
      const ring = LEVEL_RING[m.level] || LEVEL_RING[0];
      return { radius: 6 + m.level + (m.overdue ? 1 : 0), fillColor: STATE_FILL[m.state] || "#64748b",
               fillOpacity: 0.9, color: ring[0], weight: ring[1], opacity: 1 };
    }
    const live = m.state === "up" || m.state === "unknown";
    const fill = !live ? "#9ca3af" : (m.kind === "camera" ? "#0f766e" : "#475569");
    return { radius: m.kind === "camera" ? 5 : 4, fillColor: fill, fillOpacity: 0.95,
             color: "#ffffff", weight: 1.5, opacity: 1 };
  }

  function gridStyle(level) {
    return { color: "#334155", weight: 1, opacity: 0.7, fillColor: GRID_FILL[level] || GRID_FILL.normal,
             fillOpacity: level && level !== "normal" ? 0.35 : 0.08 };
  }

  function describe(m) {
    const box = document.createElement("div");
    const head = document.createElement("b");
    const line = document.createElement("div");
    if (m.kind === "case") {
      head.textContent = "#" + m.id + " " + (labels[m.subcategory] || m.subcategory);
      line.textContent = t("state_" + m.state) + " · " + t("map_level_" + (m.level || 0)) +
        (m.overdue ? " · " + t("map_overdue") : "") + (m.place ? " · " + m.place : "") + (m.grid_id ? " · " + m.grid_id : "");
    } else {
      head.textContent = t(m.kind === "camera" ? "map_camera" : "map_sensor", { name: m.source });
      line.textContent = m.agent_id + " · " + t("dev_" + m.state) + (m.placed === "grid" ? " · " + t("map_at_grid_centre") : "");
    }
    box.append(head, line);
    return box;
  }

  const renderer = L.canvas({ padding: 0.3, tolerance: 3 });
  const map = L.map(el, { preferCanvas: true, renderer: renderer, worldCopyJump: false, minZoom: 3 });
  map.attributionControl.setPrefix("Leaflet");
  const gridLayer = L.layerGroup().addTo(map);
  const markerLayer = L.featureGroup();  // on the map once the first set is in it
  const byKey = new Map();
  const labels = {};  // subcategory → "English 中文", sent once per set
  const gridById = new Map();
  const tip = L.tooltip({ direction: "top", offset: [0, -6], opacity: 0.95 });

  markerLayer.on("click", (ev) => {
    const m = ev.layer && ev.layer.options.item;
    if (m) window.location.href = m.url || "/cases/" + m.id;
  });
  markerLayer.on("mouseover", (ev) => {
    const m = ev.layer && ev.layer.options.item;
    if (!m) return;
    tip.setLatLng(ev.layer.getLatLng()).setContent(describe(m));
    if (!map.hasLayer(tip)) tip.addTo(map);
    el.style.cursor = "pointer";
  });
  markerLayer.on("mouseout", () => { tip.remove(); el.style.cursor = ""; });

  function upsert(m) {
    const have = byKey.get(m.key);
    if (have) {
      have.options.item = m;
      const ll = have.getLatLng();
      if (ll.lat !== m.lat || ll.lng !== m.lon) have.setLatLng([m.lat, m.lon]);
      have.setStyle(markerStyle(m));
      if (m.kind === "case") have.bringToFront();
      return;
    }
    const opts = markerStyle(m);
    opts.renderer = renderer;
    opts.item = m;
    const layer = L.circleMarker([m.lat, m.lon], opts);
    byKey.set(m.key, layer);
    markerLayer.addLayer(layer);
  }

  function remove(key) {
    const layer = byKey.get(key);
    if (!layer) return;
    markerLayer.removeLayer(layer);
    byKey.delete(key);
  }

  function applyLevels(levels) {
    Object.entries(levels || {}).forEach(([gid, level]) => {
      const poly = gridById.get(gid);
      if (poly && poly.options.level !== level) {
        poly.options.level = level;
        poly.setStyle(gridStyle(level));
      }
    });
  }

  let summary = {};
  function showSummary() {
    let cases = 0, cameras = 0, sensors = 0;
    byKey.forEach((layer) => {
      const k = layer.options.item.kind;
      if (k === "case") cases += 1; else if (k === "camera") cameras += 1; else sensors += 1;
    });
    api.markers = byKey.size;
    let text = t("map_summary", { cases: cases, cameras: cameras, sensors: sensors });
    if (summary.truncated) text += t("map_truncated", { n: cases, total: summary.open_cases });
    if (summary.unplaced) text += t("map_unplaced", { n: summary.unplaced });
    say(text);
  }

  function drawGrids(grids) {
    grids.forEach((g) => {
      const poly = L.polygon(g.rings, Object.assign(gridStyle(g.level), { renderer: renderer, level: g.level,
                                                                          interactive: true, bubblingMouseEvents: false }));
      const label = document.createElement("span");  // text, never markup
      const name = (document.documentElement.lang === "zh-CN" && g.name_zh) || g.name;
      label.textContent = name + " (" + g.grid_id + (g.town ? ", " + g.town : "") + ")";
      poly.bindTooltip(label, { sticky: true });
      poly.on("click", () => { window.location.href = "/cases?open=1&grid=" + encodeURIComponent(g.grid_id); });
      gridById.set(g.grid_id, poly);
      gridLayer.addLayer(poly);
    });
  }

  function baseLayers(tiles) {
    if (!tiles) {
      map.attributionControl.addAttribution("grids: the hub's grids file (no base map configured)");
      return;
    }
    L.tileLayer(tiles.url, { subdomains: tiles.subdomains || "abc", maxZoom: tiles.max_zoom,
                             attribution: tiles.attribution || "" }).addTo(map);
    if (tiles.overlay_url) {
      L.tileLayer(tiles.overlay_url, { subdomains: tiles.subdomains || "abc", maxZoom: tiles.max_zoom }).addTo(map);
    }
    map.setMaxZoom(tiles.max_zoom);
  }

  function fit(data) {
    const pts = [];
    data.grids.forEach((g) => g.rings.forEach((r) => r.forEach((p) => pts.push(p))));
    if (!pts.length) data.markers.forEach((m) => pts.push([m.lat, m.lon]));
    if (pts.length) map.fitBounds(L.latLngBounds(pts), { padding: [16, 16] });
    else map.setView([31.2, 121.4], 11);
  }

  function apply(msg) {
    summary = msg;
    api.snapshot = msg.snapshot;
    if (msg.reset) {
      const keep = new Set(msg.upserts.map((m) => m.key));
      Array.from(byKey.keys()).forEach((k) => { if (!keep.has(k)) remove(k); });
    }
    Object.assign(labels, msg.labels || {});
    msg.upserts.forEach(upsert);
    msg.removed.forEach(remove);
    if (msg.levels) applyLevels(msg.levels);
    api.updates += 1;
    showSummary();
  }

  function dot(state) {
    document.querySelectorAll(".live-dot").forEach((d) => {
      d.classList.toggle("on", state === "on");
      d.classList.toggle("off", state === "off");
    });
  }

  function listen() {
    if (!window.EventSource) return;
    const source = new EventSource(el.dataset.live + "?since=" + encodeURIComponent(api.snapshot));
    source.addEventListener("markers", (ev) => {
      dot("on");
      let msg = null;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      apply(msg);
    });
    source.onopen = () => dot("on");
    source.onerror = () => dot("off");
  }

  async function start() {
    let data;
    try {
      // Same URL, mode and credentials as the page's <link rel=preload>: the browser hands
      // over the response it is already fetching.
      const res = await fetch(el.dataset.markers, { credentials: "same-origin" });
      if (res.status === 401) { window.location.href = "/login?next=/map"; return; }
      if (!res.ok) throw new Error("the hub answered " + res.status);
      api.phases.response = performance.now();
      data = await res.json();
      api.phases.parsed = performance.now();
    } catch (err) {
      api.error = String(err);
      say(t("map_load_failed", { error: err.message }));
      return;
    }
    baseLayers(data.tiles);
    fit(data);
    drawGrids(data.grids);
    applyLevels(data.levels);
    summary = data;
    api.snapshot = data.snapshot;
    Object.assign(labels, data.labels || {});
    data.markers.forEach(upsert);
    markerLayer.addTo(map);  // one pass over the set, not one map event per marker
    showSummary();
    api.phases.added = performance.now();
    // Leaflet's canvas draws on the next animation frame; this callback runs right after.
    requestAnimationFrame(() => {
      api.firstRenderMs = performance.now();
      listen();
    });
  }

  // Viewport point of a marker (for tests and for people linking to one).
  api.pointOf = function (key) {
    const layer = byKey.get(key);
    if (!layer) return null;
    const p = map.latLngToContainerPoint(layer.getLatLng());
    const box = el.getBoundingClientRect();
    return { x: box.left + p.x, y: box.top + p.y };
  };
  api.has = (key) => byKey.has(key);
  api.styleOf = (key) => { const l = byKey.get(key); return l ? { fill: l.options.fillColor, ring: l.options.color } : null; };
  api.gridLevel = (gid) => { const p = gridById.get(gid); return p ? p.options.level : null; };
  api.map = map;

  start();
})();
