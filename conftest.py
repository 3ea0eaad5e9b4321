"""Repository root conftest: the project's test bed needs pytester; nothing here ships."""

pytest_plugins = ["pytester"]
