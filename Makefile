# holdfast: the two commands a new user needs.
#   make run    install what is missing, build (Release), start on the embedded defaults
#   make test   the same set-up, then the whole suite: Release build, ASan+UBSan build, fuzz smoke runs
.PHONY: run test build bootstrap asan fuzz clean test-release test-asan test-fuzz

JOBS ?= $(shell nproc)
DATA ?= ./data

bootstrap:
	@bash scripts/bootstrap.sh

build: bootstrap
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)

run: build
	@bash scripts/run.sh "$(DATA)"

test-release: build
	cd build && ctest --output-on-failure -j$(JOBS) --timeout 1200

asan: bootstrap
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DHOLDFAST_SANITIZE=ON >/dev/null
	cmake --build build-asan -j$(JOBS)

# Under the sanitizers the slow real-load suites are left to the Release run.
test-asan: asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS) --timeout 1200 -LE slow

fuzz: bootstrap
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DHOLDFAST_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target fuzzers

test-fuzz: fuzz
	cd build-fuzz && ctest --output-on-failure -L fuzz

test: test-release test-asan test-fuzz

clean:
	rm -rf build build-asan build-fuzz
