// MathJax 3 set-up, served from the site itself (javascripts/mathjax/, copied
// by docs/hooks.py), never from a CDN.
//
// - Pages: pymdownx.arithmatex (generic mode) wraps every formula in an
//   element of class "arithmatex" with \( \) or \[ \] delimiters; MathJax
//   processes only those elements (the mkdocs-material set-up).
// - Notebooks rendered by mkdocs-jupyter keep $ and $$ in their Markdown
//   cells (class "jp-RenderedMarkdown"); their elements are marked for
//   processing before MathJax starts.
// The theme's instant navigation is off, so every page is a full load and
// MathJax typesets it on start-up.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
  startup: {
    ready() {
      document
        .querySelectorAll(".jp-RenderedMarkdown, .jp-RenderedMarkdown *")
        .forEach((el) => el.classList.add("arithmatex"));
      MathJax.startup.defaultReady();
    },
  },
};
