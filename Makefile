# In-guest agent suite of Confidential Containers: attestation-agent, confidential-data-hub,
# api-server-rest. `make help` lists the targets and variables.

TEE_PLATFORM ?= fs
ATTESTER     ?=
KBC          ?= cc_kbc
LIBC         ?= gnu
ARCH         ?= $(shell uname -m)
DESTDIR      ?= /usr/local/bin
BENCH        ?=
CARGO        ?= cargo

# Rust's name for the architecture; s390x and powerpc64le build with glibc only (as upstream).
ifeq ($(ARCH),ppc64le)
  override ARCH := powerpc64le
endif
ifneq ($(filter $(ARCH),s390x powerpc64le),)
  override LIBC := gnu
endif

# TEE_PLATFORM -> attester features of the attestation-agent (upstream's table, plus
# az-cvm-vtpm and tpm). Empty, as kata's build passes it, leaves the choice to ATTESTER.
PLATFORMS_AVAILABLE := none fs sev tdx snp amd az-tdx-vtpm az-snp-vtpm az-cvm-vtpm se cca tpm all
PLATFORM_ATTESTER_none        := none
PLATFORM_ATTESTER_fs          := none
PLATFORM_ATTESTER_sev         := none
PLATFORM_ATTESTER_tdx         := tdx-attester
PLATFORM_ATTESTER_snp         := snp-attester
PLATFORM_ATTESTER_amd         := snp-attester
PLATFORM_ATTESTER_az-tdx-vtpm := az-tdx-vtpm-attester
PLATFORM_ATTESTER_az-snp-vtpm := az-snp-vtpm-attester
PLATFORM_ATTESTER_az-cvm-vtpm := az-snp-vtpm-attester,az-tdx-vtpm-attester
PLATFORM_ATTESTER_se          := se-attester
PLATFORM_ATTESTER_cca         := cca-attester
PLATFORM_ATTESTER_tpm         := tpm-attester
PLATFORM_ATTESTER_all         := all-attesters
ifneq ($(strip $(TEE_PLATFORM)),)
  ifeq ($(filter $(TEE_PLATFORM),$(PLATFORMS_AVAILABLE)),)
    $(error TEE_PLATFORM must be empty (then ATTESTER decides) or one of: $(PLATFORMS_AVAILABLE); not '$(TEE_PLATFORM)')
  endif
  # As upstream: the platform's attesters, unless ATTESTER is given on the make command line.
  ifneq ($(origin ATTESTER),command line)
    override ATTESTER := $(PLATFORM_ATTESTER_$(TEE_PLATFORM))
  endif
endif

# ATTESTER: a comma list of attester features (`none` adds nothing); empty means
# all-attesters, as upstream's attestation-agent Makefile.
comma := ,
empty :=
space := $(empty) $(empty)
ATTESTERS_AVAILABLE := none tdx-attester snp-attester sgx-attester cca-attester se-attester \
	csv-attester tpm-attester az-snp-vtpm-attester az-tdx-vtpm-attester nvidia-attester all-attesters
ATTESTER_LIST := $(strip $(subst $(comma),$(space),$(ATTESTER)))
ifeq ($(ATTESTER_LIST),)
  ATTESTER_LIST := all-attesters
endif
ATTESTER_UNKNOWN := $(filter-out $(ATTESTERS_AVAILABLE),$(ATTESTER_LIST))
ifneq ($(ATTESTER_UNKNOWN),)
  $(error ATTESTER names attester features this project does not have: $(ATTESTER_UNKNOWN); known: $(ATTESTERS_AVAILABLE))
endif
ATTESTER_FEATURES := $(filter-out none,$(ATTESTER_LIST))

ifeq ($(filter $(LIBC),gnu musl),)
  $(error LIBC must be gnu or musl, not '$(LIBC)')
endif
ifeq ($(filter $(KBC),offline_fs_kbc cc_kbc),)
  $(error KBC must be offline_fs_kbc or cc_kbc, not '$(KBC)')
endif

# The KBS client: KBC=cc_kbc, or upstream's RESOURCE_PROVIDER (a comma list; `kbs` is the
# KBS client, `sev` the retired online SEV KBC, which this project does not build) and
# NO_RESOURCE_PROVIDER=true.
ifneq ($(strip $(RESOURCE_PROVIDER)),)
  RESOURCE_PROVIDERS := $(subst $(comma),$(space),$(RESOURCE_PROVIDER))
  ifneq ($(filter-out kbs sev,$(RESOURCE_PROVIDERS)),)
    $(error RESOURCE_PROVIDER takes kbs and sev, not '$(filter-out kbs sev,$(RESOURCE_PROVIDERS))')
  endif
  ifneq ($(filter sev,$(RESOURCE_PROVIDERS)),)
    $(info RESOURCE_PROVIDER=sev: the online SEV KBC is retired upstream and not built here; sev guests use cc_kbc)
  endif
  ENABLE_KBS ?= $(if $(filter kbs,$(RESOURCE_PROVIDERS)),true,false)
endif
ifeq ($(NO_RESOURCE_PROVIDER),true)
  ENABLE_KBS := false
endif
ENABLE_KBS ?= $(if $(filter cc_kbc,$(KBC)),true,false)

TARGET      := $(ARCH)-unknown-linux-$(LIBC)
CARGO_OUT   := $(or $(CARGO_TARGET_DIR),target)/$(TARGET)/release
# Reproducible release binaries: the clone, the cargo home and the target directory reach
# the binaries only as fixed names (panic locations, generated code's include paths). The
# last matching prefix wins, so a target directory inside the clone is /target too.
CARGO_HOME_DIR  := $(abspath $(or $(CARGO_HOME),$(HOME)/.cargo))
REPRO_RUSTFLAGS := --remap-path-prefix=$(CURDIR)=/guest-components \
	--remap-path-prefix=$(CARGO_HOME_DIR)=/cargo \
	--remap-path-prefix=$(abspath $(or $(CARGO_TARGET_DIR),target))=/target
# Where kata's build strips the binaries from: the clone's target/, whatever CARGO_TARGET_DIR.
RELEASE_DIR := target/$(TARGET)/release
BINARIES    := attestation-agent confidential-data-hub api-server-rest

# The data hub's KMS providers: upstream's KMS_PROVIDER, a comma list of aliyun, aws and
# ehsm, or none. The default adds aws to upstream's aliyun.
KMS_PROVIDER ?= aliyun,aws
KMS_PROVIDERS := $(filter-out none,$(subst $(comma),$(space),$(KMS_PROVIDER)))
ifneq ($(filter-out aliyun aws ehsm,$(KMS_PROVIDERS)),)
  $(error KMS_PROVIDER takes aliyun, aws, ehsm or none, not '$(filter-out aliyun aws ehsm,$(KMS_PROVIDERS))')
endif

# `override`: a feature list given on the command line must not drop the KBS client.
override AA_FEATURES  := $(ATTESTER_FEATURES) coco_as
override CDH_FEATURES := $(KMS_PROVIDERS)
ifeq ($(ENABLE_KBS),true)
  override AA_FEATURES  += kbs
  override CDH_FEATURES += kbs
endif

join_features = $(subst $(space),$(comma),$(strip $(foreach f,$(2),$(1)/$(f))))
FEATURES := $(subst $(space),$(comma),$(strip $(call join_features,attestation-agent,$(AA_FEATURES)) $(call join_features,confidential-data-hub,$(CDH_FEATURES))))
FEATURE_FLAGS := --no-default-features $(if $(FEATURES),--features $(FEATURES))

.PHONY: help build install run test lint bench clean reference-values repro-check

help:
	@echo "Targets:"
	@echo "  build           release build of $(BINARIES) into target/<arch>-unknown-linux-<libc>/release"
	@echo "  install         copy the built binaries to DESTDIR (default /usr/local/bin); builds them if missing"
	@echo "  coco-extension  kata's coco guest extension (EROFS + dm-verity) from the release build"
	@echo "  run             start AA, CDH and the REST shim on loopback under ./run (offline_fs_kbc, sample attester)"
	@echo "  test            install missing test dependencies (Debian packages, as root) and run every test"
	@echo "  lint            cargo fmt --check, clippy -D warnings on every target, no file that reads outside the clone, fuzz targets built"
	@echo "  bench           run the benchmarks; BENCH=<name> runs one"
	@echo "  fuzz            run every fuzz target FUZZ_SECONDS (default 60) each; FUZZ_TARGETS=<names> picks some"
	@echo "  reference-values  the binaries' digests and the extension's verity root hash, as an RVPS message"
	@echo "  repro-check     build HEAD twice in two temporary clones and compare the artifacts"
	@echo "Variables:"
	@echo "  TEE_PLATFORM = <empty>|$(subst $(space),|,$(PLATFORMS_AVAILABLE))   (now: '$(TEE_PLATFORM)')"
	@echo "  ATTESTER     = comma list of attester features, used when TEE_PLATFORM is empty (empty: all-attesters)"
	@echo "                 (now: '$(ATTESTER)' -> $(or $(ATTESTER_FEATURES),no hardware attester))"
	@echo "  KBC          = cc_kbc|offline_fs_kbc   (now: $(KBC)); offline_fs_kbc is always built, cc_kbc adds the KBS client"
	@echo "  RESOURCE_PROVIDER = kbs[,sev]  upstream's switch for the KBS client; NO_RESOURCE_PROVIDER=true drops it"
	@echo "  ENABLE_KBS   = true|false   (now: $(ENABLE_KBS))"
	@echo "  KMS_PROVIDER = comma list of aliyun, aws, ehsm, or none: the data hub's KMS providers (now: $(KMS_PROVIDER))"
	@echo "  LIBC         = gnu|musl   (now: $(LIBC); musl needs the $(ARCH)-unknown-linux-musl rust target)"
	@echo "  DESTDIR      = install directory (now: $(DESTDIR))"
	@echo "  features passed to cargo: $(or $(FEATURES),<none>)"

build:
	RUSTFLAGS="$(strip $(REPRO_RUSTFLAGS) $(RUSTFLAGS))" $(CARGO) build --release --locked --target $(TARGET) \
		-p attestation-agent -p confidential-data-hub -p api-server-rest $(FEATURE_FLAGS)
	@if [ "$(CARGO_OUT)" != "$(RELEASE_DIR)" ]; then \
		mkdir -p $(RELEASE_DIR) && \
		for b in $(BINARIES); do install -m 0755 $(CARGO_OUT)/$$b $(RELEASE_DIR)/$$b; done; \
	fi
	@echo "guest components built for TEE_PLATFORM='$(TEE_PLATFORM)' ATTESTER='$(ATTESTER)' in $(RELEASE_DIR)"

# As upstream: installs the binaries as they are in target/ (stripped or not), building
# only those that are missing.
install:
	@for b in $(BINARIES); do [ -x $(RELEASE_DIR)/$$b ] || { $(MAKE) build && break; }; done
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
	$(CARGO) test --locked --no-fail-fast -p kbs_protocol --no-default-features
	$(CARGO) test --locked --no-fail-fast -p kms -p confidential-data-hub --features kms/aws,kms/aliyun,kms/ehsm,confidential-data-hub/aws,confidential-data-hub/aliyun,confidential-data-hub/ehsm
	$(MAKE) vm-test

lint:
	./scripts/check-no-shared.sh
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) clippy --locked --all-targets -p attester -p kbs_protocol -p kms -p confidential-data-hub \
		--features attester/all-attesters,attester/bin,kbs_protocol/bin,kms/aws,kms/aliyun,kms/ehsm,confidential-data-hub/aws,confidential-data-hub/aliyun,confidential-data-hub/ehsm -- -D warnings
	./scripts/fuzz.sh build

# Every fuzz target (fuzz/) for FUZZ_SECONDS each, FUZZ_JOBS at a time (scripts/fuzz.sh);
# FUZZ_TARGETS picks some. Crashes land in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
.PHONY: fuzz
fuzz:
	./scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

bench:
	./scripts/install-test-deps.sh
	./scripts/bench.sh $(BENCH)

# Digests of the built binaries and the coco extension's root hash, for trustee's RVPS.
reference-values:
	@for b in $(BINARIES); do [ -x $(RELEASE_DIR)/$$b ] || { echo "run 'make build coco-extension' first" >&2; exit 1; }; done
	@BIN_DIR=$(RELEASE_DIR) ARCH=$(ARCH) LIBC=$(LIBC) ./scripts/reference-values.sh

repro-check:
	./scripts/repro-check.sh

clean:
	$(CARGO) clean
	rm -rf run

# The `coco` guest extension of kata's composable VM images: the release binaries as an
# EROFS image with a dm-verity hash partition, in build/coco-extension/ (see
# coco-extension/build.sh; needs mkfs.erofs and veritysetup, scripts/install-test-deps.sh).
.PHONY: coco-extension
coco-extension: build
	BIN_DIR=$(RELEASE_DIR) ARCH=$(ARCH) LIBC=$(LIBC) ./coco-extension/build.sh

# The pod-VM test bed (vm/README.md): Debian's kernel under QEMU (TCG) with the debug
# daemons, kata's launch, SecureMount on real dm-crypt, the coco extension from its
# dm-verity disk, the tpm attester under OVMF with swtpm, PullImage from the host's registry
# onto the guest's overlayfs. The guest is cached in
# /var/tmp/coco-guest-vm.
.PHONY: vm-test
vm-test:
	./scripts/install-test-deps.sh
	$(CARGO) build --locked --workspace --bins
	$(CARGO) build --locked -p attester --features tpm-attester,bin --bin evidence-getter
	$(CARGO) test --locked --no-fail-fast -p testkit --test vm_pod --test vm_extension --test vm_tpm --test vm_image -- --include-ignored --nocapture
