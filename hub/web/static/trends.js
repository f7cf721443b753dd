/*
 * Vitals trend charts for the provider workspace.
 *
 * Plain ES2020, no build step. Loaded with <script src> after vendor/uPlot.iife.min.js; works under
 * CSP `script-src 'self'; style-src 'self'` (no inline script, no eval, no inline handlers; uPlot and
 * this file only set styles through element.style, which CSP allows).
 *
 * Markup: <div class="trend" data-src="/api/..." data-refresh-s="10"></div>
 *   data-src        same-origin URL answering the JSON below (fetched with the session cookie)
 *   data-refresh-s  seconds between refreshes, 0 = no live refresh (default 0)
 *   data-tz         optional; "UTC" labels the time axis in UTC. Default: the browser's local time
 *                   zone, which is what a provider reading the chart expects.
 *   data-heading-level  optional, 2..6 (default 3): the level of each chart's heading.
 *
 * JSON: {"charts": [{"code", "title", "unit", "unit_label"?, "normal": [low, high] | null,
 *                    "points": [{"t": unix_s, "v": number, "source": "device" | "camera"}]}],
 *        "since": unix_s, "until": unix_s}
 *
 * For each chart, the element with role="img" (class "trend-plot") carries, after every draw:
 *   data-code, data-points-drawn, data-device-points, data-camera-points, data-points-visible.
 * window.trendCharts maps each chart's code to its uPlot instance. The charts' grid has aria-busy="true"
 * while a fetch is in flight.
 */
(function () {
  "use strict";

  const DEVICE = 1; // series index in the uPlot data
  const CAMERA = 2;
  const COLORS = {
    device: "#1f5fbf",
    camera: "#a34700",
    normal: "rgba(22, 134, 58, 0.16)",
    axis: "#3d4650",
    grid: "rgba(0, 0, 0, 0.08)",
  };
  const FETCH_TIMEOUT_MS = 15000;
  const MSG = {
    loading: "Loading readings…",
    empty: "No readings in this time range.",
    loadFailed: "Couldn't load readings — retrying",
    refreshFailed: "Couldn't refresh — retrying",
    signedOut: "Your session has ended — reload the page to sign in again.",
  };

  const registry = (window.trendCharts = window.trendCharts || {});

  // ---- data shaping -------------------------------------------------------------------------

  function finite(x) {
    return typeof x === "number" && Number.isFinite(x);
  }

  /** The chart's points as uPlot's aligned columns: [t[], device v|null [], camera v|null []]. */
  function toColumns(points) {
    const pts = (Array.isArray(points) ? points : [])
      .filter((p) => p && finite(p.t) && finite(p.v))
      .map((p) => ({ t: p.t, v: p.v, camera: p.source === "camera" }))
      .sort((a, b) => a.t - b.t);
    const xs = [];
    const dev = [];
    const cam = [];
    for (const p of pts) {
      xs.push(p.t);
      dev.push(p.camera ? null : p.v);
      cam.push(p.camera ? p.v : null);
    }
    return [xs, dev, cam];
  }

  function countNonNull(arr, lo, hi, xs) {
    let n = 0;
    for (let i = 0; i < arr.length; i++) {
      if (arr[i] == null) continue;
      if (xs && (xs[i] < lo || xs[i] > hi)) continue;
      n++;
    }
    return n;
  }

  function fmtValue(v) {
    if (Number.isInteger(v)) return String(v);
    return String(Math.round(v * 10) / 10);
  }

  function summary(chart, data) {
    const [xs, dev, cam] = data;
    const total = countNonNull(dev) + countNonNull(cam);
    const unit = chart.unit ? " " + chart.unit : "";
    if (total === 0) return `${chart.title}: no readings in this time range`;
    const camN = countNonNull(cam);
    let last = xs.length - 1;
    while (last >= 0 && dev[last] == null && cam[last] == null) last--;
    const latest = dev[last] != null ? dev[last] : cam[last];
    const readings = total === 1 ? "1 reading" : `${total} readings`;
    return `${chart.title}: ${readings}, ${camN} from the camera, latest ${fmtValue(latest)}${unit}`;
  }

  function unitText(chart) {
    if (chart.unit_label != null) return String(chart.unit_label);
    return chart.unit ? String(chart.unit) : "";
  }

  function validNormal(normal) {
    return Array.isArray(normal) && normal.length === 2 && finite(normal[0]) && finite(normal[1]) && normal[0] <= normal[1]
      ? normal
      : null;
  }

  // ---- drawing ------------------------------------------------------------------------------

  /** uPlot points path builder: hollow diamonds (camera estimates), so they differ by shape, not just colour. */
  function diamonds(u, seriesIdx, idx0, idx1, filtIdxs) {
    const s = u.series[seriesIdx];
    const xs = u.data[0];
    const ys = u.data[seriesIdx];
    const r = ((s.points.size - s.points.width) / 2) * uPlot.pxRatio;
    const path = new Path2D();
    const one = (i) => {
      if (ys[i] == null) return;
      const x = Math.round(u.valToPos(xs[i], "x", true));
      const y = Math.round(u.valToPos(ys[i], s.scale, true));
      path.moveTo(x, y - r);
      path.lineTo(x + r, y);
      path.lineTo(x, y + r);
      path.lineTo(x - r, y);
      path.closePath();
    };
    if (filtIdxs) filtIdxs.forEach(one);
    else for (let i = idx0; i <= idx1; i++) one(i);
    const pad = 2 * r + s.points.width * uPlot.pxRatio;
    const clip = new Path2D();
    clip.rect(u.bbox.left - pad, u.bbox.top - pad, u.bbox.width + 2 * pad, u.bbox.height + 2 * pad);
    return { stroke: path, fill: path, clip, flags: 3 };
  }

  /** drawClear hook: the normal range as a translucent band behind the grid and the data. */
  function drawNormalBand(state) {
    return (u) => {
      const normal = state.normal;
      if (!normal) return;
      const { left, top, width, height } = u.bbox;
      let y0 = u.valToPos(normal[1], "y", true);
      let y1 = u.valToPos(normal[0], "y", true);
      y0 = Math.max(top, Math.min(top + height, y0));
      y1 = Math.max(top, Math.min(top + height, y1));
      if (y1 - y0 < 1) return;
      const ctx = u.ctx;
      ctx.save();
      ctx.fillStyle = COLORS.normal;
      ctx.fillRect(left, y0, width, y1 - y0);
      ctx.restore();
    };
  }

  function writeAttributes(state) {
    const u = state.u;
    if (!u) return;
    const [xs, dev, cam] = u.data;
    const devN = countNonNull(dev);
    const camN = countNonNull(cam);
    const { min, max } = u.scales.x;
    const visible = min == null || max == null ? 0 : countNonNull(dev, min, max, xs) + countNonNull(cam, min, max, xs);
    const el = state.plot;
    el.dataset.code = state.code;
    el.dataset.pointsDrawn = String(devN + camN);
    el.dataset.devicePoints = String(devN);
    el.dataset.cameraPoints = String(camN);
    el.dataset.pointsVisible = String(visible);
  }

  function plotHeight(width) {
    return Math.round(Math.max(180, Math.min(300, width * 0.45)));
  }

  function makeChart(view, chart, since, until) {
    const card = document.createElement("section");
    card.className = "trend-card";
    card.dataset.code = chart.code;

    const heading = document.createElement(`h${view.headingLevel}`);
    heading.className = "trend-title";
    heading.textContent = chart.title;
    if (chart.unit) {
      const unit = document.createElement("span");
      unit.className = "trend-unit";
      unit.textContent = ` (${chart.unit})`;
      heading.append(unit);
    }

    // role="img" makes its children presentational, so the button stays outside it.
    const plot = document.createElement("div");
    plot.className = "trend-plot";
    plot.setAttribute("role", "img");

    const reset = document.createElement("button");
    reset.type = "button";
    reset.className = "trend-reset";
    reset.textContent = "Reset zoom";
    // Several charts, several such buttons: the accessible name says which (and still starts with the visible text).
    reset.setAttribute("aria-label", `Reset zoom, ${chart.title}`);

    card.append(heading, plot, reset);
    view.grid.append(card);

    const state = {
      code: String(chart.code),
      chart,
      normal: validNormal(chart.normal),
      since,
      until,
      zoomed: false,
      card,
      plot,
      u: null,
      lastWidth: 0,
    };

    const resetZoom = () => {
      state.zoomed = false;
      state.u.setScale("x", { min: state.since, max: state.until });
    };
    reset.addEventListener("click", resetZoom);

    const tz = view.utc ? "UTC" : null;
    const width = Math.max(200, Math.floor(plot.clientWidth || card.clientWidth || 600));
    const opts = {
      width,
      height: plotHeight(width),
      ...(tz ? { tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), tz) } : {}),
      scales: {
        x: { time: true, auto: false, min: since, max: until },
        y: {
          range: (u, dmin, dmax) => {
            const n = state.normal;
            let lo = dmin;
            let hi = dmax;
            if (n) {
              lo = lo == null ? n[0] : Math.min(lo, n[0]);
              hi = hi == null ? n[1] : Math.max(hi, n[1]);
            }
            if (lo == null || hi == null) return [0, 1];
            return uPlot.rangeNum(lo, hi, 0.1, true);
          },
        },
      },
      axes: [
        { stroke: COLORS.axis, grid: { stroke: COLORS.grid }, ticks: { stroke: COLORS.grid } },
        {
          stroke: COLORS.axis,
          grid: { stroke: COLORS.grid },
          ticks: { stroke: COLORS.grid },
          label: chart.unit || undefined,
          size: 56,
        },
      ],
      series: [
        { label: "Time" },
        {
          label: "Bluetooth device",
          stroke: COLORS.device,
          width: 2,
          spanGaps: true,
          points: { show: true, size: 7, width: 1, stroke: COLORS.device, fill: COLORS.device },
          value: (u, v) => (v == null ? "–" : fmtValue(v) + (chart.unit ? " " + chart.unit : "")),
        },
        {
          label: "Camera estimate",
          stroke: COLORS.camera,
          width: 0,
          paths: () => null,
          points: { show: true, size: 12, width: 2, stroke: COLORS.camera, fill: "rgba(255,255,255,0)", paths: diamonds },
          value: (u, v) => (v == null ? "–" : fmtValue(v) + (chart.unit ? " " + chart.unit : "")),
        },
      ],
      legend: {
        markers: {
          width: (u, i) => (i === CAMERA ? 2 : 1),
          stroke: (u, i) => (i === CAMERA ? COLORS.camera : COLORS.device),
          fill: (u, i) => (i === CAMERA ? "transparent" : COLORS.device),
        },
      },
      cursor: {
        drag: { x: true, y: false, setScale: true },
        bind: {
          // Double-click resets to the page's time range (uPlot's own reset would fit the data instead).
          dblclick: () => () => {
            resetZoom();
            return null;
          },
        },
      },
      hooks: {
        drawClear: [drawNormalBand(state)],
        draw: [() => writeAttributes(state)],
        setScale: [
          (u, key) => {
            if (key !== "x") return;
            const { min, max } = u.scales.x;
            state.zoomed = !(min === state.since && max === state.until);
            card.classList.toggle("is-zoomed", state.zoomed);
            writeAttributes(state);
          },
        ],
      },
    };

    const data = toColumns(chart.points);
    state.lastWidth = width;
    state.u = new uPlot(opts, data, plot);
    // Make sure the x range is exactly the page's range, whatever uPlot did at construction.
    state.u.setScale("x", { min: since, max: until });
    plot.setAttribute("aria-label", summary(chart, data));
    touchZoom(state);
    markLegend(state.u);
    writeAttributes(state);
    registry[state.code] = state.u;
    return state;
  }

  /**
   * Drag-to-zoom with a finger: uPlot's own drag selection listens to the mouse only, and the workspace is
   * used on tablets. A horizontal drag shows the same selection box and zooms to it on release; vertical
   * movement still scrolls the page (touch-action: pan-y).
   */
  function touchZoom(state) {
    const u = state.u;
    const over = u.over;
    over.style.touchAction = "pan-y";
    let startX = null;
    const x = (ev) => Math.min(Math.max(ev.clientX - over.getBoundingClientRect().left, 0), over.clientWidth);
    over.addEventListener("pointerdown", (ev) => {
      if (ev.pointerType !== "touch") return;
      startX = x(ev);
    });
    over.addEventListener("pointermove", (ev) => {
      if (ev.pointerType !== "touch" || startX === null) return;
      const now = x(ev);
      u.setSelect({ left: Math.min(startX, now), width: Math.abs(now - startX), top: 0, height: over.clientHeight }, false);
    });
    const finish = (ev) => {
      if (ev.pointerType !== "touch" || startX === null) return;
      const end = x(ev);
      const left = Math.min(startX, end);
      const width = Math.abs(end - startX);
      startX = null;
      u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
      if (width < 10) return; // a tap, not a drag
      u.setScale("x", { min: u.posToVal(left, "x"), max: u.posToVal(left + width, "x") });
    };
    over.addEventListener("pointerup", finish);
    over.addEventListener("pointercancel", () => {
      startX = null;
      u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
    });
  }

  /** Tag uPlot's legend rows so app.css can give the markers their shapes (circle / diamond). */
  function markLegend(u) {
    const rows = u.root.querySelectorAll(".u-legend .u-series");
    if (rows[DEVICE]) rows[DEVICE].classList.add("trend-key-device");
    if (rows[CAMERA]) rows[CAMERA].classList.add("trend-key-camera");
  }

  function updateChart(state, chart, since, until) {
    state.chart = chart;
    state.normal = validNormal(chart.normal);
    state.since = since;
    state.until = until;
    const data = toColumns(chart.points);
    const u = state.u;
    const keep = state.zoomed ? { min: u.scales.x.min, max: u.scales.x.max } : { min: since, max: until };
    u.setData(data, false);
    u.setScale("x", keep);
    state.plot.setAttribute("aria-label", summary(chart, data));
    writeAttributes(state);
  }

  function destroyAll(view) {
    for (const st of view.states) {
      if (registry[st.code] === st.u) delete registry[st.code];
      st.u.destroy();
    }
    view.states = [];
    view.grid.replaceChildren();
  }

  function render(view, payload) {
    const charts = (payload && Array.isArray(payload.charts) ? payload.charts : [])
      .filter((c) => c && c.code != null)
      // The unit as people write it (mmHg, °C: hub/web/units.py); UCUM `unit` only when no label came with it.
      .map((c) => ({ ...c, title: c.title ? String(c.title) : String(c.code), unit: unitText(c) }));
    const since = payload && finite(payload.since) ? payload.since : null;
    const until = payload && finite(payload.until) ? payload.until : null;
    view.empty.hidden = charts.length > 0;
    if (charts.length === 0) {
      destroyAll(view);
      return;
    }
    // Default range when the server gave none: the data's own extent.
    const range = (c) => {
      if (since != null && until != null && since < until) return [since, until];
      const xs = toColumns(c.points)[0];
      if (xs.length === 0) return [Date.now() / 1000 - 86400, Date.now() / 1000];
      return xs[0] === xs[xs.length - 1] ? [xs[0] - 3600, xs[0] + 3600] : [xs[0], xs[xs.length - 1]];
    };
    const sameCharts =
      view.states.length === charts.length && view.states.every((st, i) => st.code === String(charts[i].code));
    if (sameCharts) {
      charts.forEach((c, i) => updateChart(view.states[i], c, ...range(c)));
    } else {
      destroyAll(view);
      view.states = charts.map((c) => makeChart(view, c, ...range(c)));
    }
  }

  // ---- fetching and live refresh ------------------------------------------------------------

  function setStatus(view, text) {
    // The live region stays in the page (only its text changes) so screen readers announce updates.
    if (view.status.textContent !== text) view.status.textContent = text;
  }

  async function load(view) {
    if (view.inFlight) return;
    view.inFlight = true;
    view.grid.setAttribute("aria-busy", "true");
    const first = !view.loaded;
    try {
      const signal = typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(FETCH_TIMEOUT_MS) : undefined;
      const resp = await fetch(view.src, {
        credentials: "same-origin",
        cache: "no-store",
        // Refreshes are the page's own doing, not the person's: the hub does not count them as activity,
        // so an unattended screen still reaches its idle timeout.
        headers: first ? { Accept: "application/json" } : { Accept: "application/json", "X-Auto-Refresh": "1" },
        signal,
      });
      if (resp.status === 401 || resp.status === 403) {
        view.stopped = true;
        setStatus(view, MSG.signedOut);
        return;
      }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      const payload = await resp.json();
      render(view, payload);
      view.loaded = true;
      setStatus(view, "");
    } catch (err) {
      setStatus(view, first ? MSG.loadFailed : MSG.refreshFailed);
      if (first && view.refreshMs === 0) view.refreshMs = 10000; // retry a failed first load even without live refresh
    } finally {
      view.inFlight = false;
      view.grid.setAttribute("aria-busy", "false");
      schedule(view);
    }
  }

  function schedule(view) {
    clearTimeout(view.timer);
    view.timer = 0;
    if (!view.root.isConnected) {
      // The container was swapped out (e.g. by htmx): stop polling and free the charts.
      view.stopped = true;
      destroyAll(view);
      return;
    }
    if (view.stopped || view.refreshMs <= 0 || document.visibilityState === "hidden") return;
    view.timer = setTimeout(() => load(view), view.refreshMs);
  }

  function onVisibility(view) {
    if (document.visibilityState === "hidden") {
      clearTimeout(view.timer);
      view.timer = 0;
    } else if (!view.stopped && view.refreshMs > 0 && !view.inFlight) {
      load(view); // catch up at once, then resume the interval
    }
  }

  // ---- sizing -------------------------------------------------------------------------------

  function observeSize(view) {
    if (typeof ResizeObserver !== "function") return;
    let frame = 0;
    const ro = new ResizeObserver(() => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        for (const st of view.states) {
          const w = Math.floor(st.plot.clientWidth);
          if (w > 0 && Math.abs(w - st.lastWidth) >= 1) {
            st.lastWidth = w;
            st.u.setSize({ width: w, height: plotHeight(w) });
          }
        }
      });
    });
    ro.observe(view.root);
  }

  // ---- setup --------------------------------------------------------------------------------

  function init(root) {
    if (root.dataset.trendReady) return;
    root.dataset.trendReady = "1";
    const refreshS = Number(root.dataset.refreshS || "0");
    const level = Number(root.dataset.headingLevel || "3");

    const status = document.createElement("p");
    status.className = "trend-status";
    status.setAttribute("role", "status");
    const empty = document.createElement("p");
    empty.className = "trend-empty";
    empty.textContent = MSG.empty;
    empty.hidden = true;
    const grid = document.createElement("div");
    grid.className = "trend-grid";
    root.replaceChildren(status, empty, grid);

    const view = {
      root,
      src: root.dataset.src,
      refreshMs: Number.isFinite(refreshS) && refreshS > 0 ? Math.max(1, refreshS) * 1000 : 0,
      headingLevel: Number.isInteger(level) && level >= 2 && level <= 6 ? level : 3,
      utc: (root.dataset.tz || "").toUpperCase() === "UTC",
      status,
      empty,
      grid,
      states: [],
      timer: 0,
      inFlight: false,
      loaded: false,
      stopped: false,
    };
    if (!view.src) {
      setStatus(view, "No data source for this chart.");
      return;
    }
    setStatus(view, MSG.loading);
    document.addEventListener("visibilitychange", () => onVisibility(view));
    observeSize(view);
    load(view);
  }

  function scan(scope) {
    const found = Array.from(scope.querySelectorAll("div.trend[data-src]"));
    if (scope instanceof Element && scope.matches("div.trend[data-src]")) found.push(scope);
    if (typeof uPlot !== "function") {
      for (const el of found) el.textContent = "Charts are unavailable (uPlot did not load).";
      return;
    }
    found.forEach(init);
  }

  function start() {
    scan(document);
    // Content that htmx swaps in later gets its charts too.
    document.addEventListener("htmx:load", (e) => {
      if (e.target instanceof Element) scan(e.target);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
