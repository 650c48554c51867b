// xenkit's tick guest: a bare-metal AArch64 program standing in for an RTOS in a Xen
// dom0less domain. It prints a banner, then wakes on its virtual timer every period and
// prints the tick number with the counter value, so the host can measure period and jitter
// from the guest's own clock. Between ticks it sits in WFI: Xen traps WFI and deschedules
// the vCPU, so an idle tick guest costs no physical CPU.
//
// Tick 0 is printed at the start, with the counter value the deadlines count from:
// tick n is due at CNTVCT = start + n * period, so the host can check every wake-up came
// after its deadline and measure how late it was.
//
// Boot protocol: Xen 4.17 loads it as an arm64 Image (xen/arch/arm/kernel.c checks the
// "ARM\x64" magic at 0x38 and loads at guest RAM base + text_offset) and enters at the
// first byte, EL1, MMU off, x0 = the guest's device tree. With the MMU off every data
// access is Device memory, so all loads and stores here are naturally aligned.
//
// Bootargs (the [[domain]] cmdline, read from /chosen/bootargs):
//   name=NAME        printed in every line (xenkit passes the domain's name)
//   period_ms=N      tick period, default 100
//
// Addresses are Xen's fixed guest memory map (xen/include/public/arch-arm.h): the vGIC is
// GICv2-shaped on the boards xenkit emulates (QEMU virt gic-version=2, BCM2711's GIC-400).

        .equ    PL011_BASE, 0x22000000          // GUEST_PL011_BASE (vpl011)
        .equ    UART_DR, 0x000
        .equ    UART_FR, 0x018
        .equ    UART_FR_TXFF_BIT, 5
        .equ    GICD_BASE, 0x03001000           // GUEST_GICD_BASE
        .equ    GICC_BASE, 0x03002000           // GUEST_GICC_BASE
        .equ    GICD_CTLR, 0x000
        .equ    GICD_ISENABLER0, 0x100
        .equ    GICD_IPRIORITYR, 0x400
        .equ    GICC_CTLR, 0x000
        .equ    GICC_PMR, 0x004
        .equ    GICC_IAR, 0x00c
        .equ    GICC_EOIR, 0x010
        .equ    SPURIOUS, 1023
        .equ    VTIMER_PPI, 27                  // GUEST_TIMER_VIRT_PPI
        .equ    DEFAULT_PERIOD_MS, 100
        .equ    FDT_MAGIC, 0xd00dfeed
        .equ    FDT_BEGIN_NODE, 1
        .equ    FDT_END_NODE, 2
        .equ    FDT_PROP, 3
        .equ    FDT_NOP, 4

        .text
        .global _head
// The arm64 Image header (Linux Documentation/arch/arm64/booting.rst).
_head:
        b       start                   // code0
        .long   0                       // code1
        .quad   0                       // text_offset: load at the start of guest RAM
        .quad   _end - _head            // image_size, stack included
        .quad   0xa                     // flags: little endian, 4K pages, placed anywhere
        .quad   0, 0, 0                 // res2-res4
        .long   0x644d5241              // magic "ARM\x64"
        .long   0                       // res5: no PE header

// Register use in the main line (callee-saved, so the helpers keep them):
//   x19 wake-up counter value   x20 IAR of the interrupt being handled
//   x21 name                    x22 period in ms    x23 CNTFRQ
//   x24 period in counter ticks x26 next deadline   x27 tick number   x28 GICC
start:
        mov     x19, x0
        adr     x1, stack_top
        mov     sp, x1
        adr     x1, vectors
        msr     vbar_el1, x1
        // Interrupts stay masked in PSTATE: WFI still wakes when one is pending, and the
        // loop takes it from the GIC itself, so only faults ever reach the vectors.
        msr     daifset, #0xf
        isb

        mov     x0, x19
        bl      find_bootargs
        mov     x20, x0
        adr     x21, default_name
        mov     x22, #DEFAULT_PERIOD_MS
        cbz     x20, 2f
        mov     x0, x20
        adr     x1, key_name
        bl      find_key
        cbz     x0, 1f
        mov     x21, x0
1:      mov     x0, x20
        adr     x1, key_period
        bl      find_key
        cbz     x0, 2f
        bl      parse_dec
        cbz     x0, 2f
        mov     x22, x0
2:      mrs     x23, cntfrq_el0
        mul     x24, x23, x22
        mov     x0, #1000
        udiv    x24, x24, x0
        cbnz    x24, 3f
        mov     x24, #1
3:
        adr     x0, s_guest
        bl      puts
        mov     x0, x21
        bl      put_word
        adr     x0, s_ready
        bl      puts
        mov     x0, x22
        bl      put_dec
        adr     x0, s_ms_cntfrq
        bl      puts
        mov     x0, x23
        bl      put_dec
        adr     x0, s_hz
        bl      puts

        // The virtual timer's PPI: enabled, with a priority the CPU interface lets through.
        ldr     x1, =GICD_BASE
        mov     w2, #1
        str     w2, [x1, #GICD_CTLR]
        ldr     w2, =0xa0a0a0a0
        str     w2, [x1, #GICD_IPRIORITYR + (VTIMER_PPI & ~3)]
        mov     w2, #(1 << VTIMER_PPI)
        str     w2, [x1, #GICD_ISENABLER0]
        ldr     x28, =GICC_BASE
        mov     w2, #0xff
        str     w2, [x28, #GICC_PMR]
        mov     w2, #1
        str     w2, [x28, #GICC_CTLR]

        // Deadlines are absolute (start + k * period), so lateness never accumulates.
        isb
        mrs     x19, cntvct_el0
        add     x26, x19, x24
        mov     x27, #0
        msr     cntv_cval_el0, x26
        mov     x0, #1                  // ENABLE, IMASK clear
        msr     cntv_ctl_el0, x0
        isb
        bl      print_tick

tick_loop:
        wfi
        ldr     w20, [x28, #GICC_IAR]
        and     w1, w20, #0x3ff
        cmp     w1, #SPURIOUS
        b.eq    tick_loop
        cmp     w1, #VTIMER_PPI
        b.eq    1f
        str     w20, [x28, #GICC_EOIR]
        b       tick_loop
1:      isb
        mrs     x19, cntvct_el0
        // A deadline that passed while the vCPU was not running is skipped, not made up
        // in a burst: the tick numbers show the gap.
2:      add     x27, x27, #1
        add     x26, x26, x24
        cmp     x26, x19
        b.ls    2b
        msr     cntv_cval_el0, x26
        mov     x0, #1
        msr     cntv_ctl_el0, x0
        isb
        str     w20, [x28, #GICC_EOIR]
        bl      print_tick
        b       tick_loop

// print_tick: "xenkit: tick NAME N cntvct V cntfrq F" for tick x27 woken at x19.
print_tick:
        stp     x29, x30, [sp, #-16]!
        adr     x0, s_tick
        bl      puts
        mov     x0, x21
        bl      put_word
        mov     w0, #' '
        bl      putc
        mov     x0, x27
        bl      put_dec
        adr     x0, s_cntvct
        bl      puts
        mov     x0, x19
        bl      put_dec
        adr     x0, s_cntfrq
        bl      puts
        mov     x0, x23
        bl      put_dec
        mov     w0, #'\n'
        bl      putc
        ldp     x29, x30, [sp], #16
        ret

// -- console ---------------------------------------------------------------------------
// putc(w0): one byte to the vpl011.
putc:
        ldr     x1, =PL011_BASE
1:      ldr     w2, [x1, #UART_FR]
        tbnz    w2, #UART_FR_TXFF_BIT, 1b
        str     w0, [x1, #UART_DR]
        ret

// puts(x0): a NUL-terminated string. put_word(x0): up to the first space or NUL.
puts:
        mov     w1, #0
        b       emit
put_word:
        mov     w1, #' '
emit:
        stp     x29, x30, [sp, #-32]!
        stp     x19, x20, [sp, #16]
        mov     x19, x0
        mov     w20, w1
1:      ldrb    w0, [x19], #1
        cbz     w0, 2f
        cmp     w0, w20
        b.eq    2f
        bl      putc
        b       1b
2:      ldp     x19, x20, [sp, #16]
        ldp     x29, x30, [sp], #32
        ret

// put_dec(x0): unsigned decimal.
put_dec:
        stp     x29, x30, [sp, #-48]!
        add     x1, sp, #47
        strb    wzr, [x1]
        mov     x2, #10
1:      udiv    x3, x0, x2
        msub    x4, x3, x2, x0
        add     w4, w4, #'0'
        strb    w4, [x1, #-1]!
        mov     x0, x3
        cbnz    x0, 1b
        mov     x0, x1
        bl      puts
        ldp     x29, x30, [sp], #48
        ret

// put_hex(x0): 0x and sixteen hex digits.
put_hex:
        stp     x29, x30, [sp, #-32]!
        stp     x19, x20, [sp, #16]
        mov     x19, x0
        mov     x20, #60
        mov     w0, #'0'
        bl      putc
        mov     w0, #'x'
        bl      putc
1:      lsr     x0, x19, x20
        and     w0, w0, #0xf
        cmp     w0, #10
        add     w1, w0, #'0'
        add     w2, w0, #('a' - 10)
        csel    w0, w1, w2, lo
        bl      putc
        subs    x20, x20, #4
        b.ge    1b
        ldp     x19, x20, [sp, #16]
        ldp     x29, x30, [sp], #32
        ret

// -- bootargs --------------------------------------------------------------------------
// find_bootargs(x0 = DTB) -> x0 = the string value of /chosen/bootargs, or 0.
// Properties come before subnodes in a flattened tree, so a property belongs to the node
// most recently begun.
find_bootargs:
        stp     x29, x30, [sp, #-64]!
        stp     x19, x20, [sp, #16]
        stp     x21, x22, [sp, #32]
        stp     x23, x24, [sp, #48]
        mov     x19, x0
        cbz     x19, .Lfb_none
        tst     x19, #3
        b.ne    .Lfb_none
        ldr     w1, [x19]
        rev     w1, w1
        ldr     w2, =FDT_MAGIC
        cmp     w1, w2
        b.ne    .Lfb_none
        ldr     w1, [x19, #8]           // off_dt_struct
        rev     w1, w1
        add     x20, x19, x1
        ldr     w1, [x19, #12]          // off_dt_strings
        rev     w1, w1
        add     x21, x19, x1
        mov     x22, #0
.Lfb_token:
        ldr     w1, [x20], #4
        rev     w1, w1
        cmp     w1, #FDT_BEGIN_NODE
        b.eq    .Lfb_begin
        cmp     w1, #FDT_PROP
        b.eq    .Lfb_prop
        cmp     w1, #FDT_END_NODE
        b.eq    .Lfb_token
        cmp     w1, #FDT_NOP
        b.eq    .Lfb_token
        b       .Lfb_none               // FDT_END, or not a tree
.Lfb_begin:
        mov     x22, x20
1:      ldrb    w1, [x20], #1
        cbnz    w1, 1b
        add     x20, x20, #3
        and     x20, x20, #~3
        b       .Lfb_token
.Lfb_prop:
        ldr     w23, [x20]              // value length
        rev     w23, w23
        ldr     w1, [x20, #4]           // name offset
        rev     w1, w1
        add     x24, x20, #8
        add     x20, x24, x23
        add     x20, x20, #3
        and     x20, x20, #~3
        cbz     x22, .Lfb_token
        add     x0, x21, x1
        adr     x1, s_bootargs
        bl      streq
        cbz     x0, .Lfb_token
        mov     x0, x22
        adr     x1, s_chosen
        bl      streq
        cbz     x0, .Lfb_token
        mov     x0, x24
        b       .Lfb_out
.Lfb_none:
        mov     x0, #0
.Lfb_out:
        ldp     x23, x24, [sp, #48]
        ldp     x21, x22, [sp, #32]
        ldp     x19, x20, [sp, #16]
        ldp     x29, x30, [sp], #64
        ret

// streq(x0, x1) -> x0 = 1 if the NUL-terminated strings are equal.
streq:
1:      ldrb    w2, [x0], #1
        ldrb    w3, [x1], #1
        cmp     w2, w3
        b.ne    2f
        cbnz    w2, 1b
        mov     x0, #1
        ret
2:      mov     x0, #0
        ret

// find_key(x0 = command line, x1 = "key=") -> x0 = the value after the first word that
// starts with the key, or 0.
find_key:
.Lfk_word:
        ldrb    w2, [x0]
        cbz     w2, .Lfk_miss
        cmp     w2, #' '
        b.ne    .Lfk_compare
        add     x0, x0, #1
        b       .Lfk_word
.Lfk_compare:
        mov     x3, x0
        mov     x4, x1
1:      ldrb    w5, [x4], #1
        cbz     w5, .Lfk_hit
        ldrb    w2, [x3], #1
        cmp     w2, w5
        b.eq    1b
2:      ldrb    w2, [x0]
        cbz     w2, .Lfk_miss
        cmp     w2, #' '
        b.eq    .Lfk_word
        add     x0, x0, #1
        b       2b
.Lfk_hit:
        mov     x0, x3
        ret
.Lfk_miss:
        mov     x0, #0
        ret

// parse_dec(x0) -> x0: the decimal number at x0, up to the first non-digit.
parse_dec:
        mov     x1, x0
        mov     x0, #0
        mov     x3, #10
1:      ldrb    w2, [x1], #1
        sub     w2, w2, #'0'
        cmp     w2, #9
        b.hi    2f
        madd    x0, x0, x3, x2
        b       1b
2:      ret

// -- faults ----------------------------------------------------------------------------
// Any exception is a bug here: say which vector and where, then stop.
trap:
        mov     x19, x0
        adr     x0, s_trap
        bl      puts
        mov     x0, x19
        bl      put_dec
        adr     x0, s_esr
        bl      puts
        mrs     x0, esr_el1
        bl      put_hex
        adr     x0, s_elr
        bl      puts
        mrs     x0, elr_el1
        bl      put_hex
        adr     x0, s_far
        bl      puts
        mrs     x0, far_el1
        bl      put_hex
        mov     w0, #'\n'
        bl      putc
1:      wfi
        b       1b

default_name:   .asciz  "tick"
key_name:       .asciz  "name="
key_period:     .asciz  "period_ms="
s_bootargs:     .asciz  "bootargs"
s_chosen:       .asciz  "chosen"
s_guest:        .asciz  "xenkit: guest "
s_ready:        .asciz  " ready: tick every "
s_ms_cntfrq:    .asciz  " ms, cntfrq "
s_hz:           .asciz  " Hz\n"
s_tick:         .asciz  "xenkit: tick "
s_cntvct:       .asciz  " cntvct "
s_cntfrq:       .asciz  " cntfrq "
s_trap:         .asciz  "xenkit: tick guest fault: vector "
s_esr:          .asciz  " esr "
s_elr:          .asciz  " elr "
s_far:          .asciz  " far "
        .balign 8
        .ltorg

        .balign 2048
vectors:
        .irp    n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
        .balign 128
        mov     x0, #\n
        b       trap
        .endr

        .balign 16
        .space  4096
stack_top:
_end:
