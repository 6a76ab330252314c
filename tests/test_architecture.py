"""The architecture, kept: imports only point down the layers of `.importlinter`
(data -> model -> weights -> training | serving -> pipeline -> bench), and no module
grows past 400 lines."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contract_is_kept():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_no_module_is_over_400_lines():
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines())
             for folder in ("power_bert_tf", "experiments")
             for path in (ROOT / folder).rglob("*.py")}
    assert not {path: n for path, n in sizes.items() if n >= 400}, sorted(sizes.items(),
                                                                          key=lambda i: -i[1])[:3]
