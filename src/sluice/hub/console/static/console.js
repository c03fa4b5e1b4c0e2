// sluice console: the live tail and the throughput chart. Vanilla JS, no dependencies, nothing fetched from
// elsewhere; values are inserted with textContent only (never innerHTML), so log content cannot become markup.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function svgEl(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmtBytes(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function utc(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // A JSON GET; a 401 (session expired, hub restarted) goes back to the sign-in form.
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) {
        window.location.href = "/console/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("signed out");
      }
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.errorMessage || ("HTTP " + r.status));
        return body;
      });
    });
  }

  // ------------------------------------------------------------------ throughput chart
  function drawChart(figure, data) {
    var svg = figure.querySelector("svg"), now = figure.querySelector(".chart-now");
    var w = Math.max(200, Math.round(svg.getBoundingClientRect().width)), h = 140, top = 14, bottom = 16;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var pts = data.points;
    if (pts.length < 2) {
      svgEl("text", { x: 8, y: h / 2 }, svg).textContent =
        "collecting samples (one every " + data.interval + " s)…";
      now.textContent = "";
      return;
    }
    var t0 = pts[0][0], t1 = pts[pts.length - 1][0], span = Math.max(t1 - t0, 1);
    var maxB = Math.max.apply(null, pts.map(function (p) { return p[1]; })) || 1;
    var maxL = Math.max.apply(null, pts.map(function (p) { return p[2]; })) || 1;
    var plotH = h - top - bottom;
    function x(t) { return ((t - t0) / span) * (w - 2) + 1; }
    function y(v, max) { return top + plotH - (v / max) * plotH; }
    [0, 0.5, 1].forEach(function (f) {
      var gy = top + plotH * f;
      svgEl("line", { x1: 0, x2: w, y1: gy, y2: gy, "class": "grid" }, svg);
    });
    var bytesLine = pts.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1], maxB).toFixed(1); }).join(" ");
    svgEl("polygon", { points: x(t0) + "," + (top + plotH) + " " + bytesLine + " " + x(t1) + "," + (top + plotH),
                       "class": "area" }, svg);
    svgEl("polyline", { points: bytesLine, "class": "bytes" }, svg);
    svgEl("polyline", { points: pts.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[2], maxL).toFixed(1); })
                        .join(" "), "class": "logs" }, svg);
    svgEl("text", { x: 4, y: 10 }, svg).textContent = "max " + fmtBytes(maxB) + "/s";
    svgEl("text", { x: w - 4, y: 10, "text-anchor": "end" }, svg).textContent = "max " + maxL.toFixed(1) + " logs/s";
    svgEl("text", { x: 4, y: h - 3 }, svg).textContent = utc(t0);
    svgEl("text", { x: w - 4, y: h - 3, "text-anchor": "end" }, svg).textContent = utc(t1);
    var last = pts[pts.length - 1];
    now.textContent = "latest: " + fmtBytes(last[1]) + "/s, " + last[2].toFixed(1) + " logs/s";
  }

  function startChart(figure) {
    var src = figure.getAttribute("data-src"), note = figure.querySelector(".chart-now");
    function refresh() {
      getJSON(src).then(function (data) {
        drawChart(figure, data);
        setTimeout(refresh, Math.max(1, data.interval) * 1000);
      }).catch(function (err) {
        note.textContent = "chart unavailable: " + err.message;
        setTimeout(refresh, 10000);
      });
    }
    refresh();
  }

  // ------------------------------------------------------------------ live tail
  var MAX_ROWS = 500;

  function tailRow(log) {
    var tr = document.createElement("tr");
    [utc(log.time), String(log.shard), log.topic, log.source].forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    var td = document.createElement("td");
    td.className = "fields";
    var pairs = log.fields.slice();
    Object.keys(log.tags).forEach(function (k) { pairs.push(["__tag__:" + k, log.tags[k]]); });
    pairs.forEach(function (kv, i) {
      var b = document.createElement("b");
      b.textContent = kv[0];
      td.appendChild(b);
      td.appendChild(document.createTextNode("=" + kv[1] + (i < pairs.length - 1 ? "  " : "")));
    });
    tr.appendChild(td);
    return tr;
  }

  function startTail(form) {
    var rows = document.getElementById("tail-rows"), status = document.getElementById("tail-status");
    var q = document.getElementById("tail-q"), regex = document.getElementById("tail-regex");
    var pauseButton = document.getElementById("tail-pause");
    var state = { cursor: "", paused: false, timer: null, generation: 0, stopped: false };

    function schedule(ms) {
      clearTimeout(state.timer);
      state.timer = setTimeout(poll, ms);
    }

    function poll() {
      if (state.paused) return;
      var generation = state.generation;
      var params = new URLSearchParams({ project: form.getAttribute("data-project"),
                                         logstore: form.getAttribute("data-logstore"),
                                         q: q.value, regex: regex.checked ? "1" : "0" });
      if (state.cursor) params.set("cursor", state.cursor);
      getJSON("/console/api/tail?" + params.toString()).then(function (data) {
        if (generation !== state.generation) return;  // the filter changed while this poll was out
        state.cursor = data.cursor;
        for (var i = 0; i < data.logs.length; i++) rows.insertBefore(tailRow(data.logs[i]), rows.firstChild);
        while (rows.childNodes.length > MAX_ROWS) rows.removeChild(rows.lastChild);
        status.textContent = "following " + data.shards + " shard(s) · last poll " + utc(Date.now() / 1000) +
          " · " + data.logs.length + " new" + (data.dropped ? " (" + data.dropped + " older not shown)" : "") +
          " · " + rows.childNodes.length + " shown";
        status.className = "muted";
        schedule(1500);
      }).catch(function (err) {
        if (generation !== state.generation) return;
        status.textContent = "tail stopped: " + err.message;
        status.className = "error";
        // a bad filter stays bad: wait for the user to change it; anything else is retried
        if (!/filter/.test(err.message)) schedule(5000);
      });
    }

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.generation++;
      state.cursor = "";
      while (rows.firstChild) rows.removeChild(rows.firstChild);
      var params = new URLSearchParams({ q: q.value });
      if (regex.checked) params.set("regex", "1");
      history.replaceState(null, "", location.pathname + "?" + params.toString());
      status.textContent = "starting…";
      schedule(0);
    });
    pauseButton.addEventListener("click", function () {
      state.paused = !state.paused;
      pauseButton.textContent = state.paused ? "Resume" : "Pause";
      if (state.paused) {
        clearTimeout(state.timer);
        status.textContent = "paused";
      } else {
        schedule(0);
      }
    });
    schedule(0);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var figure = document.getElementById("chart");
    if (figure) startChart(figure);
    var form = document.getElementById("tail-form");
    if (form) startTail(form);
  });
})();
