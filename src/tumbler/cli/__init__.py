"""The command-line front-ends: tumbler and tumblerd with their subcommands."""
