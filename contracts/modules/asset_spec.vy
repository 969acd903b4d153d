# pragma version ~=0.4.3
"""
@title Compute asset spec
@notice What a GPU node offers, and its one-word storage layout.
@dev Shared by ComputeAsset (which stores the word) and JobMarket (which reads it in
     one call when it checks an assignment), so the layout is defined once.
     Bits: gpu_model 0-31, vram_mib 32-63, gpu_count 64-71, cpu_cores 72-87,
     region 88-103, price 104-167, expire 168-231, active 232, max_leases 240-255.
     The word is full, so the memory and disk an asset offers are kept beside its
     lease totals in asset_stakes' resource word; `_pack` ignores them and `_unpack`
     leaves them zero.
"""

_MASK8: constant(uint256) = 2**8 - 1
_MASK16: constant(uint256) = 2**16 - 1
_MASK32: constant(uint256) = 2**32 - 1
_MASK64: constant(uint256) = 2**64 - 1


struct Spec:
    gpu_model: uint32  # GPU model id (see computenet.gpus), 0 for CPU-only nodes
    vram_mib: uint32  # memory per GPU, MiB
    gpu_count: uint8  # GPUs offered
    cpu_cores: uint16  # CPU cores offered
    region: uint16  # ISO 3166-1 numeric country code of the node
    price: uint64  # price per GPU-second (per second for CPU-only nodes), token base units
    expire: uint64  # end of the listing, unix seconds
    active: bool  # false while the owner has paused it
    max_leases: uint16  # leases it holds at once (assigned until finalized), at least 1
    memory_mib: uint32  # memory offered to leases together, MiB
    disk_mib: uint32  # disk offered to leases together, MiB


@internal
@pure
def _pack(s: Spec) -> uint256:
    """
    @dev Spec -> storage word (layout in the module docstring).
    """
    word: uint256 = convert(s.gpu_model, uint256)
    word |= convert(s.vram_mib, uint256) << 32
    word |= convert(s.gpu_count, uint256) << 64
    word |= convert(s.cpu_cores, uint256) << 72
    word |= convert(s.region, uint256) << 88
    word |= convert(s.price, uint256) << 104
    word |= convert(s.expire, uint256) << 168
    if s.active:
        word |= 1 << 232
    word |= convert(s.max_leases, uint256) << 240
    return word


@internal
@pure
def _unpack(word: uint256) -> Spec:
    """
    @dev Storage word -> Spec, with memory_mib and disk_mib zero (they are not in the word).
    """
    return Spec(
        gpu_model=convert(word & _MASK32, uint32),
        vram_mib=convert((word >> 32) & _MASK32, uint32),
        gpu_count=convert((word >> 64) & _MASK8, uint8),
        cpu_cores=convert((word >> 72) & _MASK16, uint16),
        region=convert((word >> 88) & _MASK16, uint16),
        price=convert((word >> 104) & _MASK64, uint64),
        expire=convert((word >> 168) & _MASK64, uint64),
        active=(word >> 232) & 1 == 1,
        max_leases=convert(word >> 240, uint16),
        memory_mib=0,
        disk_mib=0,
    )
