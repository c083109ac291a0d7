/* clusterlens explore report: colour the map by the select box; hovering a
   point shows the item's thumbnail and id. Inlined into the page; no network. */
(function () {
  "use strict";
  var dataEl = document.getElementById("map-data");
  var svg = document.getElementById("map-svg");
  if (!dataEl || !svg) {
    return;
  }
  var data = JSON.parse(dataEl.textContent);
  var box = document.getElementById("map-box");
  var tip = document.getElementById("map-tip");
  var tipImg = tip.querySelector("img");
  var tipId = tip.querySelector(".map-tip-id");
  var tipCat = tip.querySelector(".map-tip-cat");
  var select = document.getElementById("map-colour");
  var legend = document.getElementById("map-legend");
  var more = document.getElementById("map-legend-more");
  var halo = document.getElementById("map-halo");
  var points = svg.querySelectorAll("circle.pt");
  var xs = new Float64Array(points.length);
  var ys = new Float64Array(points.length);
  for (var k = 0; k < points.length; k++) {
    xs[k] = parseFloat(points[k].getAttribute("cx"));
    ys[k] = parseFloat(points[k].getAttribute("cy"));
  }
  var mode = select.value;
  var current = -1;

  function recolour(name) {
    var m = data.modes[name];
    if (!m) {
      return;
    }
    mode = name;
    for (var k = 0; k < points.length; k++) {
      points[k].setAttribute("fill", m.colors[m.codes[k]]);
    }
    legend.textContent = "";
    m.legend.forEach(function (entry) {
      var li = document.createElement("li");
      var sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = entry[1];
      var count = document.createElement("span");
      count.className = "muted";
      count.textContent = " " + entry[2].toLocaleString("en-US");
      li.appendChild(sw);
      li.appendChild(document.createTextNode(entry[0]));
      li.appendChild(count);
      legend.appendChild(li);
    });
    more.textContent = m.more;
    svg.setAttribute("data-mode", name);
    if (current >= 0) {
      show(current);
    }
  }

  function show(k) {
    current = k;
    var m = data.modes[mode];
    var src = data.thumbs[k];
    if (src) {
      tipImg.src = src;
      tipImg.hidden = false;
    } else {
      tipImg.removeAttribute("src");
      tipImg.hidden = true;
    }
    tipId.textContent = data.ids[k];
    tipCat.textContent = m ? m.names[m.codes[k]] : "";
    halo.setAttribute("cx", xs[k]);
    halo.setAttribute("cy", ys[k]);
    halo.style.display = "";
    tip.hidden = false;
    tip.setAttribute("data-k", String(k));
    // place the tooltip beside the point, inside the map's box
    var b = box.getBoundingClientRect();
    var p = points[k].getBoundingClientRect();
    var left = p.right - b.left + 10;
    var top = p.top - b.top - 10;
    if (left + tip.offsetWidth > box.clientWidth) {
      left = p.left - b.left - tip.offsetWidth - 10;
    }
    top = Math.max(0, Math.min(top, box.clientHeight - tip.offsetHeight));
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = top + "px";
  }

  function hide() {
    current = -1;
    tip.hidden = true;
    halo.style.display = "none";
  }

  function nearest(evt) {
    var ctm = svg.getScreenCTM();
    if (!ctm) {
      return -1;
    }
    var inv = ctm.inverse();
    var x = inv.a * evt.clientX + inv.c * evt.clientY + inv.e;
    var y = inv.b * evt.clientX + inv.d * evt.clientY + inv.f;
    var reach = 12 / Math.max(ctm.a, 1e-6); // 12 screen pixels
    var best = -1;
    var bestD = reach * reach;
    for (var k = 0; k < xs.length; k++) {
      var dx = xs[k] - x;
      var dy = ys[k] - y;
      var d = dx * dx + dy * dy;
      if (d <= bestD) {
        bestD = d;
        best = k;
      }
    }
    return best;
  }

  svg.addEventListener("mousemove", function (evt) {
    var k = nearest(evt);
    if (k < 0) {
      hide();
    } else if (k !== current) {
      show(k);
    }
  });
  svg.addEventListener("mouseleave", hide);
  select.addEventListener("change", function () {
    recolour(select.value);
  });
  recolour(mode);
})();
