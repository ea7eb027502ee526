// Injected at the top of every page by tests/test_site.py: records console errors, then
// reports the page's layout problems as JSON in a pre element (id pc-site-report).
window.__pcErrors = [];
window.addEventListener("error", e => window.__pcErrors.push("uncaught: " + e.message));
window.addEventListener("unhandledrejection", e => window.__pcErrors.push("rejection: " + e.reason));
const __pcConsoleError = console.error;
console.error = function (...a) { window.__pcErrors.push("console: " + a.join(" ")); __pcConsoleError(...a); };
window.addEventListener("load", () => setTimeout(() => {
  const wide = [...document.querySelectorAll("article table")].filter(t => {
    const box = t.closest(".md-typeset__table") || t.parentElement;
    return t.getBoundingClientRect().width > box.clientWidth + 1;
  }).map(t => t.innerText.slice(0, 60));
  // a table that needs its sideways scroll bar at this width: Material wraps each table in a
  // box that scrolls, so a table wider than the column is hidden behind the scroll, not cut off
  const scrolled = [...document.querySelectorAll("article table")].filter(t => {
    const wrap = t.closest(".md-typeset__scrollwrap");
    return wrap && wrap.scrollWidth > wrap.clientWidth + 1;
  }).map(t => t.innerText.slice(0, 60) + " (" + Math.round(t.getBoundingClientRect().width) + " px)");
  const clipped = [...document.querySelectorAll("article td, article th")].filter(
    c => getComputedStyle(c).whiteSpace === "nowrap" && c.scrollWidth > c.clientWidth + 1
  ).map(c => c.innerText.slice(0, 40));
  // anything laid out past the right edge of the content column (a table, a code block, an
  // image, a formula) at this window width, unless it sits in a box that scrolls sideways
  // inside the column (Material wraps tables and code blocks in one)
  const column = document.querySelector("article");
  const right = column ? column.getBoundingClientRect().right : window.innerWidth;
  const scrolls = e => {
    for (let a = e.parentElement; a && a !== column; a = a.parentElement) {
      if (["auto", "scroll"].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  const overflow = column ? [...column.querySelectorAll("table, pre, img, math, p, li")]
    .filter(e => e.getBoundingClientRect().right > right + 1 && !scrolls(e))
    .map(e => e.tagName.toLowerCase() + ": " + (e.innerText || e.getAttribute("src") || "").slice(0, 50)) : [];
  const page = document.documentElement.scrollWidth > window.innerWidth + 1
    ? ["the page scrolls sideways: " + document.documentElement.scrollWidth + " px"] : [];
  const images = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const math = [...document.querySelectorAll("math")];
  const unrendered = math.filter(m => m.getBoundingClientRect().width === 0).map(m => m.getAttribute("alttext"));
  const text = document.querySelector("article") ? document.querySelector("article").innerText : "";
  const raw = (text.match(/\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/g) || []).slice(0, 5);
  const pre = document.createElement("pre");
  pre.id = "pc-site-report";
  pre.textContent = JSON.stringify({wide, scrolled, clipped, overflow: overflow.concat(page), images,
                                    imageCount: document.images.length, math: math.length, unrendered, raw,
                                    errors: window.__pcErrors});
  document.body.appendChild(pre);
}, 300));
