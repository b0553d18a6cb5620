//! tidegate's kernel programs.
//!
//! - `tidegate_xdp` (XDP, ingress) and `tidegate_tc_egress` (TC classifier attached with
//!   TCX, egress), and their `_inner` twins for `tunnels = "inner"` (one program per
//!   tunnel mode, so the default ones carry no inner-parse code), parse each packet with the shared parser in `tidegate-common` and add it
//!   to its flow's slot in the shared flow table (`FLOWS`, see `tidegate_common::slot`)
//!   with atomic instructions.
//! - Userspace reads the table through a memory mapping, exports each flow's growth
//!   since its last export, and removes idle flows: it marks the slot retiring, waits
//!   for an RCU grace period (every program run that could still add to it has
//!   finished), exports the rest and frees the slot.
//! - A packet whose flow finds no slot in its probe window goes to the `FALLBACK` ring
//!   buffer as a one-packet record; only if that is full too is it lost, and
//!   `fallback_dropped` says so.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod account;
mod atomic;
mod bench;
mod enforce;
mod maps;
mod packet;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use tidegate_common::{Direction, Tunnels, enforce::VERDICT_DROPPED};

/// TCX_NEXT / TC_ACT_UNSPEC: let the next program (or the default action) decide.
const TC_ACT_UNSPEC: i32 = -1;

/// Accounts every frame received on the interface and judges it by the enforcement
/// policy (if userspace installed one): a packet a drop rule matches on a line in
/// enforce mode is dropped (`XDP_DROP`) after being accounted; everything else passes.
/// Tunnelled packets are keyed by their outermost header (`tunnels = "outer"`).
///
/// Multi-buffer aware (`xdp.frags`), so it attaches to jumbo-MTU lines; headers are in
/// the first buffer, and the frame length counts every fragment.
#[xdp(frags)]
pub fn tidegate_xdp(ctx: XdpContext) -> u32 {
    // SAFETY: valid context pointer for this run.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    ingress(&ctx, frame_len, Tunnels::Outer)
}

/// [`tidegate_xdp`] for lines whose frames always fit one buffer (the probe attaches it
/// when the interface's MTU leaves no room for fragments): the frame is the packet, so
/// its length needs no helper call.
#[xdp]
pub fn tidegate_xdp_linear(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    ingress(&ctx, frame_len, Tunnels::Outer)
}

/// [`tidegate_xdp`] keying tunnelled packets by the header inside the tunnel
/// (`tunnels = "inner"`).
#[xdp(frags)]
pub fn tidegate_xdp_inner(ctx: XdpContext) -> u32 {
    // SAFETY: valid context pointer for this run.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    ingress(&ctx, frame_len, Tunnels::Inner)
}

/// [`tidegate_xdp_linear`] keying tunnelled packets by the header inside the tunnel.
#[xdp]
pub fn tidegate_xdp_linear_inner(ctx: XdpContext) -> u32 {
    let frame_len = (ctx.data_end() - ctx.data()) as u64;
    ingress(&ctx, frame_len, Tunnels::Inner)
}

#[inline(always)]
fn ingress(ctx: &XdpContext, frame_len: u64, tunnels: Tunnels) -> u32 {
    let pkt = packet::Packet::new(ctx.data(), ctx.data_end(), frame_len as usize);
    let v = account::account(
        pkt,
        tunnels,
        frame_len,
        ctx.ingress_ifindex() as u32,
        Direction::Ingress,
        1,
        None,
        true,
        // SAFETY: valid context; the callee passes a writable buffer of `len` bytes.
        &|off, to, len| unsafe { bpf_xdp_load_bytes(ctx.ctx, off, to.cast(), len) },
    );
    if v.verdict == VERDICT_DROPPED {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Returns `XDP_PASS` and does nothing else: the baseline the benchmarks compare the
/// accounting program against (never attached by the probe).
#[xdp(frags)]
pub fn tidegate_xdp_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmarks only (never attached): [`tidegate_xdp_linear`] on the next flow of a
/// scattered sequence (`bench::next_flow` rewrites the source address), so one test run
/// with a repeat count measures the program over many flows.
#[xdp]
pub fn tidegate_xdp_bench_flows(ctx: XdpContext) -> u32 {
    if !bench::next_flow(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    ingress(&ctx, (ctx.data_end() - ctx.data()) as u64, Tunnels::Outer)
}

/// Benchmarks only: the same rewrite as [`tidegate_xdp_bench_flows`], then `XDP_PASS`.
#[xdp]
pub fn tidegate_xdp_bench_flows_baseline(ctx: XdpContext) -> u32 {
    if !bench::next_flow(&ctx) {
        return xdp_action::XDP_ABORTED;
    }
    xdp_action::XDP_PASS
}

/// Accounts every frame the host sends through the interface; never changes its fate.
/// Tunnelled packets are keyed by their outermost header.
#[classifier]
pub fn tidegate_tc_egress(ctx: TcContext) -> i32 {
    egress(&ctx, Tunnels::Outer)
}

/// [`tidegate_tc_egress`] keying tunnelled packets by the header inside the tunnel.
#[classifier]
pub fn tidegate_tc_egress_inner(ctx: TcContext) -> i32 {
    egress(&ctx, Tunnels::Inner)
}

#[inline(always)]
fn egress(ctx: &TcContext, tunnels: Tunnels) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: the context pointer is valid for the program's run.
    let (ifindex, gso_segs, len, vlan_present, vlan_tci) = unsafe {
        (
            (*skb).ifindex,
            (*skb).gso_segs,
            (*skb).len,
            (*skb).vlan_present,
            (*skb).vlan_tci,
        )
    };
    // A VLAN tag the stack keeps out of band (hardware-accelerated) is the outer tag.
    let vlan = if vlan_present != 0 {
        Some((vlan_tci & 0x0fff) as u16)
    } else {
        None
    };
    // Headers beyond the linear area are invisible to direct packet access: pull them in.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < len && linear < packet::PULL_LEN {
        let want = if len < packet::PULL_LEN {
            len
        } else {
            packet::PULL_LEN
        };
        let _ = ctx.pull_data(want);
    }
    let pkt = packet::Packet::new(ctx.data(), ctx.data_end(), len as usize);
    account::account(
        pkt,
        tunnels,
        len as u64,
        ifindex,
        Direction::Egress,
        gso_segs,
        vlan,
        false,
        // SAFETY: valid context; the callee passes a writable buffer of `len` bytes.
        &|off, to, len| unsafe { bpf_skb_load_bytes(skb.cast(), off, to.cast(), len) },
    );
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
