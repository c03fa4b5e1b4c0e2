// sluice console: the search page of a logstore (query box, time range, histogram, results table).
// Vanilla JS, nothing fetched from elsewhere; every value goes in with textContent (never innerHTML).
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var form = document.getElementById("search-form");
  if (!form) return;
  var statusEl = document.getElementById("search-status");
  var head = document.getElementById("search-head");
  var body = document.getElementById("search-rows");
  var svg = document.querySelector("#search-histogram svg");
  var project = form.getAttribute("data-project"), logstore = form.getAttribute("data-logstore");

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) {
        window.location.href = "/console/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("signed out");
      }
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data.errorCode ? data.errorCode + ": " : "") + (data.errorMessage || r.status));
        return data;
      });
    });
  }

  function utc(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function drawHistogram(buckets) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var max = 1;
    buckets.forEach(function (b) { if (b.count > max) max = b.count; });
    var w = 600 / Math.max(1, buckets.length);
    buckets.forEach(function (b, i) {
      var h = b.count ? Math.max(1, 76 * b.count / max) : 0;
      var rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", String(i * w + 0.5));
      rect.setAttribute("y", String(80 - h));
      rect.setAttribute("width", String(Math.max(1, w - 1)));
      rect.setAttribute("height", String(h));
      rect.setAttribute("class", "bar");
      rect.setAttribute("data-count", String(b.count));
      var title = document.createElementNS(SVG, "title");
      title.textContent = utc(b.from) + " – " + utc(b.to) + ": " + b.count;
      rect.appendChild(title);
      svg.appendChild(rect);
    });
  }

  function drawRows(data) {
    while (head.firstChild) head.removeChild(head.firstChild);
    while (body.firstChild) body.removeChild(body.firstChild);
    var tr = document.createElement("tr");
    var cols = data.sql ? data.keys : ["time (UTC)", "log"];
    cols.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c;
      tr.appendChild(th);
    });
    head.appendChild(tr);
    data.rows.forEach(function (row) {
      var r = document.createElement("tr");
      if (data.sql) {
        data.keys.forEach(function (k) {
          var td = document.createElement("td");
          td.textContent = row[k];
          r.appendChild(td);
        });
      } else {
        var t = document.createElement("td");
        t.textContent = utc(Number(row.__time__));
        var log = document.createElement("td");
        log.className = "log";
        log.textContent = Object.keys(row).filter(function (k) { return k !== "__time__"; })
          .map(function (k) { return k + "=" + row[k]; }).join("  ");
        r.appendChild(t);
        r.appendChild(log);
      }
      body.appendChild(r);
    });
  }

  function run() {
    var q = document.getElementById("search-q").value;
    var range = document.getElementById("search-range").value;
    var params = "project=" + encodeURIComponent(project) + "&logstore=" + encodeURIComponent(logstore) +
      "&range=" + encodeURIComponent(range) + "&q=" + encodeURIComponent(q);
    history.replaceState(null, "", location.pathname + "?q=" + encodeURIComponent(q) + "&range=" + range);
    statusEl.textContent = "searching…";
    statusEl.className = "muted";
    var searched = getJSON("/console/api/search?" + params).then(function (data) {
      drawRows(data);
      return data;
    });
    var counted = getJSON("/console/api/histogram?" + params).then(function (h) {
      drawHistogram(h.buckets);
      return h;
    });
    Promise.all([searched, counted]).then(function (both) {
      var data = both[0], h = both[1];
      statusEl.textContent = (data.sql ? data.count + " result rows" : h.total + " matching logs, newest " +
        data.count + " shown") + " · " + data.elapsed_ms + " ms · " + data.progress;
      statusEl.setAttribute("data-total", String(h.total));
    }).catch(function (err) {
      statusEl.textContent = err.message;
      statusEl.className = "error";
    });
  }

  form.addEventListener("submit", function (e) { e.preventDefault(); run(); });
  run();
})();
