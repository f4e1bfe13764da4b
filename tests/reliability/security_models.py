"""A model class outside rsft, for the security tests (the tests put this folder on sys.path).

Importing this module is visible (it lands in ``sys.modules``), so a test can show that rsft
refused a folder naming it before importing it.
"""

from rsft.tasks.digits import DigitsNet


class OutsideNet(DigitsNet):
    """DigitsNet under another name: any class a user defines outside the rsft package."""
