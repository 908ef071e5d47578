# p2pbuf front door: meson + ninja underneath.
#   make          build the libraries, the CLI, tests and examples (build/)
#   make run      the main job: p2pbuf run, then a kernel-uAPI program through p2pbuf exec
#   make check    every test, normally, under ASan+UBSan, threaded ones under TSan
#   make bench    every benchmark
#   make chaos    the chaos tests (in one process, across processes), long
#                 (CHAOS_SECONDS=300 each; docs/chaos.md)
#   make fuzz     every libFuzzer target, FUZZ_TIME seconds each (default 300)
#   make install  install libraries, headers, pkg-config file, man pages, CLI
PREFIX ?= /usr/local
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps run check bench chaos fuzz install clean

CHAOS_SECONDS ?= 300

all: deps $(BUILD)/build.ninja
	@ninja -C $(BUILD)

deps:
	@./scripts/deps.sh

# Order-only on deps: with make -j the configure must wait for meson to be installed.
$(BUILD)/build.ninja: | deps
	@meson setup $(BUILD) --prefix=$(PREFIX) $(MESON_OPTS) >/dev/null

run: all
	@./$(BUILD)/tools/p2pbuf run $(ARGS)
	@printf '\n== The kernel-uAPI door: a program written for /dev/vfio, /dev/iommu and\n'
	@printf '   dma-bufs (no p2pbuf header), unmodified, on the same emulated devices\n'
	@printf '   $$ %s\n\n' '$(BUILD)/tools/p2pbuf exec -- $(BUILD)/examples/door-tour'
	@./$(BUILD)/tools/p2pbuf exec -- ./$(BUILD)/examples/door-tour

check: deps
	@./scripts/check.sh

bench: all
	@./$(BUILD)/tools/p2pbuf bench all $(ARGS)

chaos: all
	@CHAOS_SECONDS=$(CHAOS_SECONDS) ./$(BUILD)/tests/test-chaos
	@CHAOS_SECONDS=$(CHAOS_SECONDS) ./$(BUILD)/tests/chaos-vu
fuzz: deps
	@./scripts/fuzz.sh $(FUZZ_TARGETS)

install: all
	@meson install -C $(BUILD)

clean:
	rm -rf build build-*
