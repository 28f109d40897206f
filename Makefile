# Conveniences for people who have make; ./dev is the contract (it needs only python3).
.PHONY: run test bench
run:
	./dev run
test:
	./dev test
bench:
	.venv/bin/python bench/run.py all
