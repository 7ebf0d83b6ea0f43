"""Extensions written the way a user would write them: each is one file whose one registration line
plugs it into llmcse (tests/test_registries.py uses them through the CLI)."""
