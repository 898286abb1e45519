# In-guest agent suite of Confidential Containers: attestation-agent, confidential-data-hub,
# api-server-rest. `make help` lists the targets and variables.

TEE_PLATFORM ?= fs
KBC          ?= cc_kbc
ENABLE_KBS   ?= $(if $(filter cc_kbc,$(KBC)),true,false)
LIBC         ?= gnu
ARCH         ?= $(shell uname -m)
DESTDIR      ?= /usr/local/bin
BENCH        ?=
CARGO        ?= cargo

TARGET      := $(ARCH)-unknown-linux-$(LIBC)
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),target)/$(TARGET)/release
BINARIES    := attestation-agent confidential-data-hub api-server-rest

# TEE_PLATFORM -> attester features of the attestation-agent crate.
PLATFORMS_AVAILABLE := none fs tdx snp az-cvm-vtpm se cca tpm all
ATTESTER_FEATURES_none        :=
ATTESTER_FEATURES_fs          :=
ATTESTER_FEATURES_tdx         := tdx-attester
ATTESTER_FEATURES_snp         := snp-attester
ATTESTER_FEATURES_az-cvm-vtpm := az-snp-vtpm-attester az-tdx-vtpm-attester
ATTESTER_FEATURES_se          := se-attester
ATTESTER_FEATURES_cca         := cca-attester
ATTESTER_FEATURES_tpm         := tpm-attester
ATTESTER_FEATURES_all         := all-attesters
ifeq ($(filter $(TEE_PLATFORM),$(PLATFORMS_AVAILABLE)),)
  $(error TEE_PLATFORM must be one of: $(PLATFORMS_AVAILABLE); not '$(TEE_PLATFORM)')
endif
ifeq ($(filter $(LIBC),gnu musl),)
  $(error LIBC must be gnu or musl, not '$(LIBC)')
endif
ifeq ($(filter $(KBC),offline_fs_kbc cc_kbc),)
  $(error KBC must be offline_fs_kbc or cc_kbc, not '$(KBC)')
endif

AA_FEATURES  := $(ATTESTER_FEATURES_$(TEE_PLATFORM)) coco_as
CDH_FEATURES :=
ifeq ($(ENABLE_KBS),true)
  AA_FEATURES  += kbs
  CDH_FEATURES += kbs
endif

comma := ,
empty :=
space := $(empty) $(empty)
join_features = $(subst $(space),$(comma),$(strip $(foreach f,$(2),$(1)/$(f))))
FEATURES := $(subst $(space),$(comma),$(strip $(call join_features,attestation-agent,$(AA_FEATURES)) $(call join_features,confidential-data-hub,$(CDH_FEATURES))))
FEATURE_FLAGS := --no-default-features $(if $(FEATURES),--features $(FEATURES))

.PHONY: help build install run test lint bench clean

help:
	@echo "Targets:"
	@echo "  build    release build of $(BINARIES) into target/<arch>-unknown-linux-<libc>/release"
	@echo "  install  copy the binaries to DESTDIR (default /usr/local/bin)"
	@echo "  run      start AA, CDH and the REST shim on loopback under ./run (offline_fs_kbc, sample attester)"
	@echo "  test     install missing test dependencies (Debian packages, as root) and run every test"
	@echo "  lint     cargo fmt --check and clippy -D warnings on every target"
	@echo "  bench    run the benchmarks; BENCH=<name> runs one"
	@echo "Variables:"
	@echo "  TEE_PLATFORM = none|fs|tdx|snp|az-cvm-vtpm|se|cca|tpm|all   (now: $(TEE_PLATFORM))"
	@echo "  KBC          = cc_kbc|offline_fs_kbc   (now: $(KBC)); offline_fs_kbc is always built, cc_kbc adds the KBS client"
	@echo "  ENABLE_KBS   = true|false   (now: $(ENABLE_KBS)); derived from KBC, false builds without the KBS client"
	@echo "  LIBC         = gnu|musl   (now: $(LIBC); musl needs the $(ARCH)-unknown-linux-musl rust target)"
	@echo "  DESTDIR      = install directory (now: $(DESTDIR))"
	@echo "  features passed to cargo: $(or $(FEATURES),<none>)"

build:
	$(CARGO) build --release --locked --target $(TARGET) \
		-p attestation-agent -p confidential-data-hub -p api-server-rest $(FEATURE_FLAGS)

install: build
	install -d $(DESTDIR)
	for b in $(BINARIES); do install -m 0755 $(RELEASE_DIR)/$$b $(DESTDIR)/$$b; done

run:
	$(CARGO) build --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest
	./scripts/run.sh

test:
	./scripts/install-test-deps.sh
	$(CARGO) build --locked --workspace --bins
	$(CARGO) test --locked --workspace --no-fail-fast
	$(CARGO) test --locked --no-fail-fast -p attester --features all-attesters,bin
	$(CARGO) test --locked --no-fail-fast -p kbs_protocol --features bin
	$(CARGO) test --locked --no-fail-fast -p kms -p confidential-data-hub --features kms/aws,confidential-data-hub/aws

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets -p attester -p kbs_protocol -p kms -p confidential-data-hub \
		--features attester/all-attesters,attester/bin,kbs_protocol/bin,kms/aws,kms/aliyun,confidential-data-hub/aws -- -D warnings

bench:
	./scripts/install-test-deps.sh
	./scripts/bench.sh $(BENCH)

clean:
	$(CARGO) clean
	rm -rf run
