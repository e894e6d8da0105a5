"""A snippet for subprocess tests: make torch and onnx unimportable, as on a base install."""

# Any real import of torch or onnx fails (their specs resolve, so libraries that merely probe for them,
# as lancedb does with importlib.util.find_spec, behave as they would with them installed).
BLOCKER = r"""
import sys, importlib.abc, importlib.machinery
class _Fail(importlib.abc.Loader):
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise ImportError(f'{module.__name__} is blocked: the serving side must not need it')
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx'):
            return importlib.machinery.ModuleSpec(name, _Fail())
        return None
sys.meta_path.insert(0, Block())
"""
