"""Small pieces shared by every package of the toolkit."""
from common.errors import ToolkitError

__all__ = ["ToolkitError"]
