# The README's two commands. Both delegate to ./dev, which needs only python3
# (use `./dev run` / `./dev test` directly on a machine without make).
.PHONY: run test bench
run:
	./dev run
test:
	./dev test
bench:
	.venv/bin/python bench/run.py all
