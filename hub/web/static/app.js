// cityops operator UI: live regions over server-sent events, keyboard dispatch.
// The server renders every page; this script only refreshes marked regions in place
// (never reloading the page), so one template renders both the page and its updates.
"use strict";
(function () {
  const body = document.body;
  document.documentElement.dataset.loadedAt = String(Date.now());
  // The page's messages in its language (base.html renders them; see hub/web/render.py).
  const MESSAGES = (() => {
    const node = document.getElementById("i18n-messages");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  })();
  function t(key, params) {
    const text = MESSAGES[key] !== undefined ? MESSAGES[key] : key;
    return text.replace(/%\((\w+)\)s/g, (all, name) => (params && name in params ? String(params[name]) : all));
  }
  // The one translator for the page's other scripts (map.js, report.js): base.html loads
  // this script first, and deferred scripts run in document order.
  window.cityopsT = t;

  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o == null ? o : o[k]), obj);
  }

  function setDot(state) {
    document.querySelectorAll(".live-dot").forEach((d) => {
      d.classList.toggle("on", state === "on");
      d.classList.toggle("off", state === "off");
      d.title = state === "on" ? t("live") : t("reconnecting");
    });
  }

  function heat(n, max) {
    if (n <= 0) return "heat-0";
    if (max <= 1) return "heat-3";
    return "heat-" + Math.min(5, 1 + Math.floor((4 * n) / max));
  }

  function applyOverview(data) {
    if (!data || !data.cases) return;
    document.querySelectorAll("[data-k]").forEach((el) => {
      const v = get(data, el.dataset.k);
      if (v !== undefined && String(v) !== el.textContent) el.textContent = String(v);
    });
    const byGrid = data.cases.by_grid || {};
    const max = Math.max(0, ...Object.values(byGrid));
    document.querySelectorAll("path[data-grid]").forEach((p) => {
      const n = byGrid[p.dataset.grid] || 0;
      p.setAttribute("class", "cell " + heat(n, max));
    });
    document.querySelectorAll("[data-grid-count]").forEach((t) => {
      t.textContent = String(byGrid[t.dataset.gridCount] || 0);
    });
    const spark = document.querySelector("[data-spark] polyline");
    const series = data.events_per_minute || [];
    if (spark && series.length > 1) {
      const m = Math.max(1, ...series);
      spark.setAttribute("points", series.map((v, i) =>
        ((i * 120) / (series.length - 1)).toFixed(1) + "," + (22 - (20 * v) / m).toFixed(1)).join(" "));
    }
  }

  function busy(region) {
    const active = document.activeElement;
    if (active && active !== body && region.contains(active) &&
        /^(INPUT|SELECT|TEXTAREA|BUTTON|SUMMARY)$/.test(active.tagName)) return true;
    return region.querySelector("[data-dirty], details[open]") !== null;
  }

  let refreshing = false;
  let again = false;
  async function refreshRegions() {
    if (refreshing) { again = true; return; }  // one more pass when this one ends
    refreshing = true;
    try {
      const res = await fetch(location.href, { headers: { "X-Requested-With": "cityops-live" },
                                               credentials: "same-origin" });
      if (res.status === 401) { location.reload(); return; }
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const seen = new Set([...document.querySelectorAll("[data-case-id]")].map((e) => e.dataset.caseId));
      doc.querySelectorAll("[data-region]").forEach((fresh) => {
        const current = fresh.id && document.getElementById(fresh.id);
        if (!current || busy(current) || current.innerHTML === fresh.innerHTML) return;
        current.innerHTML = fresh.innerHTML;
        current.querySelectorAll("[data-case-id]").forEach((row) => {
          if (!seen.has(row.dataset.caseId)) row.classList.add("fresh");
        });
      });
      document.dispatchEvent(new CustomEvent("cityops:refreshed"));
    } catch (err) {
      setDot("off");
    } finally {
      refreshing = false;
      if (again) { again = false; refreshRegions(); }
    }
  }

  function connect() {
    if (!window.EventSource) return;
    const source = new EventSource("/api/v1/live");
    // The feed's version the server had when it rendered this page: newer data means
    // something changed since (even between the render and this stream's first event).
    let seen = Number(body.dataset.liveVersion || 0);
    source.addEventListener("overview", (ev) => {
      setDot("on");
      let data = null;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      applyOverview(data);
      window.cityopsLive = { version: data.version, at: Date.now() };
      if (data.version <= seen) return;
      seen = data.version;
      if (body.dataset.refresh) refreshRegions();
    });
    source.onerror = () => setDot("off");
    source.onopen = () => setDot("on");
  }

  document.addEventListener("input", (ev) => {
    const form = ev.target.closest && ev.target.closest("form");
    if (form && form.method.toLowerCase() === "post") form.setAttribute("data-dirty", "1");
  });

  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "d" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && /^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) return;
    const btn = document.getElementById("btn-dispatch");
    if (btn) { ev.preventDefault(); btn.click(); }
  });

  const clock = document.querySelector("[data-clock]");
  if (clock) {
    setInterval(() => {
      const d = new Date();
      const pad = (n) => String(n).padStart(2, "0");
      clock.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) +
        " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
    }, 10000);
  }

  // A flash belongs to the page it was redirected to; live refreshes should not repeat it.
  if (location.search.includes("done=") && window.history.replaceState) {
    const u = new URL(location.href);
    u.searchParams.delete("done");
    window.history.replaceState(null, "", u.pathname + u.search + u.hash);
  }

  if (body.dataset.live) connect();
})();
