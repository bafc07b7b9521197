"""An accessibility audit for browser tests: axe-core, run in the page under test.

``assert_accessible(page)`` fails the test on every serious or critical violation that axe
finds in the page as it is now, in the light and the dark colour scheme, listing rule, element
and how to fix it. Call it on each state a test visits: after a dialog opens, after a form
comes back with errors. Pages with JavaScript disabled cannot be audited this way.

axe-core is vendored in tests/vendor (pinned, with its licence) rather than served by the
portal: only the tests use it, and it must work offline. It is evaluated through the DevTools
protocol, which the page's Content-Security-Policy does not govern, so the page is audited with
its real policy in force.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

AXE_VERSION = "4.14.1"
AXE_SCRIPT = Path(__file__).parent / "vendor" / f"axe-core-{AXE_VERSION}" / "axe.min.js"

# What "accessible" means here: WCAG 2.1 A and AA, plus axe's best practices (heading order,
# landmarks), which is what the portal's pages are held to.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = ("serious", "critical")
SCHEMES = ("light", "dark")


@cache
def _axe_source() -> str:
    return AXE_SCRIPT.read_text(encoding="utf-8")


def violations(page: Any, *, impacts: tuple[str, ...] = FAILING_IMPACTS) -> list[dict[str, Any]]:
    """axe's violations of ``impacts`` in the page's current state."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe_source())
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const results = await window.axe.run(document, {
                runOnly: { type: "tag", values: tags },
                resultTypes: ["violations"],
            });
            return results.violations;
        }""",
        TAGS,
    )
    return [violation for violation in found if violation.get("impact") in impacts]


def describe(found: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for violation in found:
        lines.append(f"- [{violation['impact']}] {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:5]:
            target = " ".join(str(part) for part in node.get("target", []))
            summary = " ".join(node.get("failureSummary", "").split())
            lines.append(f"    {target}: {summary}")
        if len(violation["nodes"]) > 5:
            lines.append(f"    … and {len(violation['nodes']) - 5} more")
        lines.append(f"    {violation['helpUrl']}")
    return "\n".join(lines)


def _scheme(page: Any) -> str:
    return str(
        page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'")
    )


def assert_accessible(page: Any, *, schemes: tuple[str, ...] = SCHEMES) -> None:
    """Fail on any serious or critical axe violation in the page as it is now, in each colour
    scheme (the portal follows prefers-color-scheme); the page keeps the scheme it had."""
    before = _scheme(page)
    reports: list[str] = []
    try:
        for scheme in schemes:
            page.emulate_media(color_scheme=scheme)
            # Colours fade between schemes where a page has CSS transitions (the admin's
            # links do): audit the colours they settle on, not one caught mid-fade.
            page.evaluate("Promise.all(document.getAnimations().map((a) => a.finished))")
            if found := violations(page):
                reports.append(
                    f"{len(found)} serious/critical accessibility violation(s) on {page.url} "
                    f"in the {scheme} colour scheme:\n{describe(found)}"
                )
    finally:
        page.emulate_media(color_scheme=before)
    if reports:
        raise AssertionError("\n".join(reports))
