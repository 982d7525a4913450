# holdfast: the two commands a new user needs.
#   make run    install what is missing, build (Release), start on the embedded defaults
#   make test   the same set-up, then the whole suite: Release build, ASan+UBSan build, a ThreadSanitizer
#               build of the threaded parts, fuzz smoke runs
.PHONY: run test build bootstrap asan tsan fuzz clean test-release test-asan test-tsan test-fuzz

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

# ThreadSanitizer: the code with threads of its own (spool, filter stage,
# caches) and the system tests of the daemon's threads and reloads.
TSAN_TESTS = Spool|FilterProcess|UsersCache|CredentialsCache|EventLog|system\.test_(reload_during_logins|pop3_clients|lmtp_clients|metrics)$$
tsan: bootstrap
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHOLDFAST_TSAN=ON >/dev/null
	cmake --build build-tsan -j$(JOBS)

test-tsan: tsan
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j$(JOBS) --timeout 1200 -R '$(TSAN_TESTS)'

fuzz: bootstrap
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DHOLDFAST_FUZZ=ON >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target fuzzers

test-fuzz: fuzz
	cd build-fuzz && ctest --output-on-failure -L fuzz

test: test-release test-asan test-tsan test-fuzz

clean:
	rm -rf build build-asan build-tsan build-fuzz
