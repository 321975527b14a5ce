"""The dashboard's stylesheet and script, served from /static/ (no CDN, no build step: the
dashboard must work on a machine without internet access). The script only refreshes the live
region and adds conveniences; every page and action works without it."""

from __future__ import annotations

VERSION = "2"  # in the asset URLs, so a browser never mixes an old script with new pages

CSS = """
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2430;
background:#f5f6f8}
a{color:#2457c5;text-decoration:none}a:hover{text-decoration:underline}
header{display:flex;align-items:center;gap:1.2em;background:#1f2430;color:#dfe3ea;
padding:.6em 1.5em;flex-wrap:wrap}
header a{color:#dfe3ea}header .brand{font-weight:700;font-size:1.15em;color:#fff}
header nav{display:flex;gap:.2em}header nav a{padding:.3em .7em;border-radius:4px}
header nav a.on{background:#3a4256;color:#fff}
header .backend{font-family:ui-monospace,monospace;font-size:.85em;color:#9aa3b5;
margin-left:auto}
header .muted{color:#9aa3b5;font-size:.85em}
main{padding:1em 1.5em 3em;max-width:1300px}
h1{font-size:1.35em;margin:.4em 0 .6em}h2{font-size:1.05em;margin:1.4em 0 .5em}
table{border-collapse:collapse;background:#fff;border:1px solid #e1e4ea;border-radius:6px;
margin:.3em 0 1em;min-width:40%}
th,td{padding:.35em .8em;text-align:left;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#555d6e;background:#fafbfc;font-size:.9em}
tbody tr:hover{background:#f8f9fb}
.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#7a8294}
.mono,td.id{font-family:ui-monospace,monospace;font-size:.9em}
.cards{display:flex;gap:1em;flex-wrap:wrap;margin:.2em 0 1em}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:.7em 1.1em;
min-width:9em}
.card b{display:block;font-size:1.6em;font-variant-numeric:tabular-nums}
.card span{color:#7a8294;font-size:.85em}
.card.bad b{color:#c0392b}.card a{color:inherit;display:block}.card a:hover{text-decoration:none}
.card:has(a):hover{border-color:#9db4e8}
.charts{display:flex;gap:1em;flex-wrap:wrap}
.chart{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:.6em .8em;
flex:1 1 420px}
.chart h2{margin:.1em 0 .3em}.chart svg{width:100%;height:auto;display:block}
.legend{font-size:.8em;color:#555d6e}.legend i{display:inline-block;width:.8em;height:.8em;
margin:0 .3em 0 .8em;border-radius:2px;vertical-align:-1px}
.bar{display:inline-block;height:.7em;background:#5b8def;border-radius:2px;
vertical-align:middle;margin-right:.3em}
.bar.sch{background:#b9a2e8}.bar.run{background:#f0b429}
.badge{display:inline-block;padding:.05em .5em;border-radius:9px;font-size:.8em;
font-weight:600;background:#e7e9ee;color:#3a4256}
.s-success{background:#dcf3e3;color:#1d7a3e}.s-failure{background:#fbe0dd;color:#b03224}
.s-retry{background:#fdf0d5;color:#8a5a00}.s-started,.s-progress{background:#dde8fd;
color:#2457c5}.s-revoked{background:#eee;color:#666}.s-scheduled{background:#efe7fb;
color:#6b3fb5}
pre.code{background:#fff;border:1px solid #e1e4ea;border-radius:6px;padding:.7em;
overflow:auto;max-height:30em;font-size:.85em;margin:.3em 0 1em}
pre.tb{background:#2a2f3a;color:#f3d4d0;border-color:#2a2f3a}
form.filters{display:flex;gap:.6em;flex-wrap:wrap;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:.85em;color:#555d6e}
input,select,button{font:inherit;padding:.3em .5em;border:1px solid #c9ced8;border-radius:4px;
background:#fff}
button{cursor:pointer;background:#2457c5;color:#fff;border-color:#2457c5}
button.secondary{background:#fff;color:#2457c5}
button.danger{background:#c0392b;border-color:#c0392b}
button.link{background:none;border:none;color:#dfe3ea;padding:0;text-decoration:underline}
.actions{display:flex;gap:.5em;flex-wrap:wrap;margin:.4em 0}
.notice{background:#dcf3e3;border:1px solid #b5e2c3;padding:.5em .8em;border-radius:4px}
.notice.error{background:#fbe0dd;border-color:#f2b8b1}
.progress{background:#e7e9ee;border-radius:4px;height:.9em;width:20em;overflow:hidden}
.progress div{background:#2457c5;height:100%}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1.2em;background:#fff;
border:1px solid #e1e4ea;border-radius:6px;padding:.8em 1em;margin:.3em 0 1em}
dl.kv dt{color:#555d6e}dl.kv dd{margin:0}
.pager{display:flex;gap:1em}
body.bare main{max-width:26em;margin:8vh auto;background:#fff;border:1px solid #e1e4ea;
border-radius:6px;padding:1.5em 2em}
body.bare form{display:flex;flex-direction:column;gap:.8em}
"""

JS = r"""
(function () {
  "use strict";
  var PERIOD = 2000;
  var live = document.getElementById("live");
  var status = document.getElementById("live-status");
  var busy = false, stopped = false;

  function say(text) { if (status) { status.textContent = text; } }

  function partialUrl() {
    var u = new URL(window.location.href);
    u.searchParams.set("partial", "1");
    return u.toString();
  }

  function checkedValues() {
    var out = {};
    live.querySelectorAll("input[type=checkbox][name=ids]:checked").forEach(function (b) {
      out[b.value] = true;
    });
    return out;
  }

  function refresh() {
    if (!live || busy || stopped) { return; }
    if (document.hidden) { say("paused"); return; }
    busy = true;
    fetch(partialUrl(), {credentials: "same-origin", cache: "no-store",
                         headers: {"Accept": "text/html"}})
      .then(function (r) {
        if (r.redirected || r.status === 401) {  // the login ended: stop, do not loop
          stopped = true; say("signed out: reload the page"); return null;
        }
        if (!r.ok) { say("update failed (" + r.status + ")"); return null; }
        return r.text();
      })
      .then(function (html) {
        if (html === null || html === undefined) { return; }
        if (html !== live.innerHTML) {
          var keep = checkedValues();
          live.innerHTML = html;
          live.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (b) {
            if (keep[b.value]) { b.checked = true; }
          });
        }
        say(document.hidden ? "paused" : "live · " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("offline, retrying"); })
      .then(function () { busy = false; });
  }

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!(t instanceof Element)) { return; }
    var ask = t.closest("[data-confirm]");
    if (ask && !window.confirm(ask.getAttribute("data-confirm"))) { e.preventDefault(); }
  });
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t instanceof HTMLInputElement && t.hasAttribute("data-select-all")) {
      document.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (b) {
        b.checked = t.checked;
      });
    }
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); } else { say("paused"); }
  });
  if (live) { say("live"); window.setInterval(refresh, PERIOD); }
})();
"""
