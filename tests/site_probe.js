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
  const clipped = [...document.querySelectorAll("article td, article th")].filter(
    c => getComputedStyle(c).whiteSpace === "nowrap" && c.scrollWidth > c.clientWidth + 1
  ).map(c => c.innerText.slice(0, 40));
  const images = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const math = [...document.querySelectorAll("math")];
  const unrendered = math.filter(m => m.getBoundingClientRect().width === 0).map(m => m.getAttribute("alttext"));
  const text = document.querySelector("article") ? document.querySelector("article").innerText : "";
  const raw = (text.match(/\$[^$\n]*\\[a-zA-Z]+[^$\n]*\$/g) || []).slice(0, 5);
  const pre = document.createElement("pre");
  pre.id = "pc-site-report";
  pre.textContent = JSON.stringify({wide, clipped, images, math: math.length, unrendered, raw,
                                    errors: window.__pcErrors});
  document.body.appendChild(pre);
}, 300));
