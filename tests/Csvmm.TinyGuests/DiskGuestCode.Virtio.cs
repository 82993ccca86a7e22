using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;
using L = Csvmm.TinyGuests.GuestLayout;

namespace Csvmm.TinyGuests;

internal sealed partial class DiskGuestCode
{
    // virtio_pci_common_cfg offsets
    private const int CfgDeviceFeatureSelect = 0x00, CfgDeviceFeature = 0x04, CfgDriverFeatureSelect = 0x08, CfgDriverFeature = 0x0C;
    private const int CfgDeviceStatus = 0x14, CfgQueueSelect = 0x16, CfgQueueSize = 0x18, CfgQueueMsix = 0x1A, CfgQueueEnable = 0x1C;
    private const int CfgQueueNotifyOff = 0x1E, CfgQueueDesc = 0x20, CfgQueueDriver = 0x28, CfgQueueDevice = 0x30;

    private const byte StatusAcknowledge = 1, StatusDriver = 2, StatusDriverOk = 4, StatusFeaturesOk = 8;

    /// <summary>Features the driver accepts when offered (word 0): SIZE_MAX is not (segments are never split),
    /// FLUSH is (without it QEMU switches the disk to writethrough), RO is (it only informs).</summary>
    private const int AcceptedFeatures0 = (1 << 9) | (1 << 5);

    /// <summary>
    /// virtio-blk over the modern PCI transport: capability walk, reset/feature negotiation (VERSION_1 + FLUSH + RO),
    /// one split queue of up to 256 entries with interrupts suppressed, requests as 3-descriptor chains
    /// (header, data, status) whose head is 3 × slot, completions found by polling used.idx.
    /// </summary>
    private void EmitVirtio()
    {
        var a = _a;

        // virtioInit → eax = 0 or an error code (0x30x).
        Define(ref _virtioInit);
        {
            var fail = a.CreateLabel();
            var capLoop = a.CreateLabel();
            var capNext = a.CreateLabel();
            var capDone = a.CreateLabel();
            a.push(rbx);
            a.push(r12);
            a.push(r13);
            a.push(r14);
            a.push(r15);

            a.mov(r15d, 0x301);
            a.mov(ebx, 0x06);
            a.call(_pciRead16);
            a.test(eax, 0x10);                // capabilities list
            a.jz(fail);
            a.mov(ebx, 0x34);
            a.call(_pciRead8);
            a.and(eax, 0xFC);
            a.mov(r12d, eax);
            a.mov(r14d, 48);                  // loop guard
            a.Label(ref capLoop);
            a.test(r12d, r12d);
            a.jz(capDone);
            a.dec(r14d);
            a.jz(capDone);
            a.mov(ebx, r12d);
            a.call(_pciRead8);
            a.cmp(eax, 0x09);                 // vendor-specific
            a.jne(capNext);
            a.lea(ebx, __[r12 + 3]);
            a.call(_pciRead8);
            a.mov(r13d, eax);                 // cfg_type
            a.cmp(r13d, 1);
            a.jb(capNext);
            a.cmp(r13d, 4);
            a.ja(capNext);
            a.bt(__dword_ptr[rbp + VCapFound], r13d);
            a.jc(capNext);                    // the first of each type wins
            a.lea(ebx, __[r12 + 4]);
            a.call(_pciRead8);
            a.mov(ecx, eax);
            a.call(_barBase);
            a.test(rax, rax);
            a.jz(capNext);
            a.push(rax);
            a.push(rax);
            a.lea(ebx, __[r12 + 8]);
            a.call(_pciRead32);
            a.pop(rcx);
            a.pop(rcx);
            a.add(rax, rcx);                  // eax = offset (zero-extended) + BAR base
            a.mov(__qword_ptr[rbp + r13 * 8 + (VCommon - 8)], rax);
            a.bts(__dword_ptr[rbp + VCapFound], r13d);
            a.cmp(r13d, 2);
            a.jne(capNext);
            a.lea(ebx, __[r12 + 16]);
            a.call(_pciRead32);
            a.mov(__dword_ptr[rbp + VNotifyMul], eax);
            a.Label(ref capNext);
            a.lea(ebx, __[r12 + 1]);
            a.call(_pciRead8);
            a.and(eax, 0xFC);
            a.mov(r12d, eax);
            a.jmp(capLoop);
            a.Label(ref capDone);
            a.mov(r15d, 0x302);
            a.mov(eax, __dword_ptr[rbp + VCapFound]);
            a.and(eax, 0x16);                 // common, notify, device (ISR unused)
            a.cmp(eax, 0x16);
            a.jne(fail);

            // reset, ACKNOWLEDGE | DRIVER, features
            a.mov(rbx, __qword_ptr[rbp + VCommon]);
            a.mov(__byte_ptr[rbx + CfgDeviceStatus], 0);
            var resetWait = a.CreateLabel();
            var resetDone = a.CreateLabel();
            var timeout = a.CreateLabel();
            TimeoutStart();
            a.Label(ref resetWait);
            a.mov(al, __byte_ptr[rbx + CfgDeviceStatus]);
            a.test(al, al);
            a.jz(resetDone);
            TimeoutCheck(timeout);
            a.jmp(resetWait);
            a.Label(ref timeout);
            a.mov(r15d, ErrTimeout);
            a.jmp(fail);
            a.Label(ref resetDone);
            a.mov(__byte_ptr[rbx + CfgDeviceStatus], StatusAcknowledge);
            a.mov(__byte_ptr[rbx + CfgDeviceStatus], StatusAcknowledge | StatusDriver);
            a.mov(r15d, 0x303);
            a.mov(__dword_ptr[rbx + CfgDeviceFeatureSelect], 1);
            a.mov(eax, __dword_ptr[rbx + CfgDeviceFeature]);
            a.test(eax, 1);                   // VIRTIO_F_VERSION_1 (bit 32)
            a.jz(fail);
            a.mov(__dword_ptr[rbx + CfgDeviceFeatureSelect], 0);
            a.mov(r12d, __dword_ptr[rbx + CfgDeviceFeature]);
            a.and(r12d, AcceptedFeatures0);
            a.mov(__dword_ptr[rbx + CfgDriverFeatureSelect], 0);
            a.mov(__dword_ptr[rbx + CfgDriverFeature], r12d);
            a.mov(__dword_ptr[rbx + CfgDriverFeatureSelect], 1);
            a.mov(__dword_ptr[rbx + CfgDriverFeature], 1);
            a.mov(__byte_ptr[rbx + CfgDeviceStatus], StatusAcknowledge | StatusDriver | StatusFeaturesOk);
            a.mov(r15d, 0x304);
            a.mov(al, __byte_ptr[rbx + CfgDeviceStatus]);
            a.test(al, StatusFeaturesOk);
            a.jz(fail);

            // queue 0: size min(max, 256), a power of two
            a.mov(r15d, 0x305);
            a.mov(__word_ptr[rbx + CfgQueueSelect], 0);
            a.movzx(eax, __word_ptr[rbx + CfgQueueSize]);
            a.test(eax, eax);
            a.jz(fail);
            a.mov(ecx, L.MaxVirtqSize);
            a.cmp(eax, ecx);
            a.cmova(eax, ecx);
            a.lea(ecx, __[rax - 1]);
            a.test(ecx, eax);
            a.jnz(fail);
            a.mov(__dword_ptr[rbp + VQSize], eax);
            a.mov(__word_ptr[rbx + CfgQueueSize], ax);
            a.xor(edx, edx);
            a.mov(ecx, 3);
            a.div(ecx);
            a.mov(ecx, L.MaxQueueDepth);
            a.cmp(eax, ecx);
            a.cmova(eax, ecx);
            a.mov(__dword_ptr[rbp + VMaxQd], eax);
            a.mov(edi, L.VirtqDesc);
            a.xor(eax, eax);
            a.mov(ecx, (L.VirtqUsed + 0x1000 - L.VirtqDesc) / 8);
            a.rep.stosq();
            a.mov(__word_ptr[(ulong)L.VirtqAvail], 1);   // VRING_AVAIL_F_NO_INTERRUPT
            a.mov(__dword_ptr[rbx + CfgQueueDesc], (int)L.VirtqDesc);
            a.mov(__dword_ptr[rbx + CfgQueueDesc + 4], 0);
            a.mov(__dword_ptr[rbx + CfgQueueDriver], (int)L.VirtqAvail);
            a.mov(__dword_ptr[rbx + CfgQueueDriver + 4], 0);
            a.mov(__dword_ptr[rbx + CfgQueueDevice], (int)L.VirtqUsed);
            a.mov(__dword_ptr[rbx + CfgQueueDevice + 4], 0);
            a.mov(__word_ptr[rbx + CfgQueueMsix], 0xFFFF);   // VIRTIO_MSI_NO_VECTOR
            a.movzx(eax, __word_ptr[rbx + CfgQueueNotifyOff]);
            a.imul(eax, __dword_ptr[rbp + VNotifyMul]);
            a.add(__qword_ptr[rbp + VNotify], rax);
            a.mov(__word_ptr[rbx + CfgQueueEnable], 1);
            a.mov(__byte_ptr[rbx + CfgDeviceStatus], StatusAcknowledge | StatusDriver | StatusFeaturesOk | StatusDriverOk);

            // capacity (config offset 0, 64-bit, read as two dwords)
            a.mov(rcx, __qword_ptr[rbp + VDevCfg]);
            a.mov(eax, __dword_ptr[rcx]);
            a.mov(edx, __dword_ptr[rcx + 4]);
            a.shl(rdx, 32);
            a.or(rax, rdx);
            a.mov(__qword_ptr[rbp + VSectors], rax);
            a.xor(eax, eax);
            var ret = a.CreateLabel();
            a.jmp(ret);
            a.Label(ref fail);
            a.mov(eax, r15d);
            a.Label(ref ret);
            a.pop(r15);
            a.pop(r14);
            a.pop(r13);
            a.pop(r12);
            a.pop(rbx);
            a.ret();
        }

        // virtioSubmit(edi = slot, esi = type (0 IN, 1 OUT, 4 FLUSH), rdx = sector, r8 = buffer, r9d = bytes, 0 = none):
        // writes the chain and puts its head in the avail ring (not yet published: virtioKick).
        Define(ref _virtioSubmit);
        {
            var noData = a.CreateLabel();
            var statusDesc = a.CreateLabel();
            var flagsDone = a.CreateLabel();
            a.mov(r10d, edi);
            a.shl(r10d, 4);
            a.add(r10d, L.VirtioHeaders);
            a.mov(__dword_ptr[r10], esi);
            a.mov(__dword_ptr[r10 + 4], 0);
            a.mov(__qword_ptr[r10 + 8], rdx);
            a.lea(r11d, __[rdi + (int)L.VirtioStatus]);
            a.mov(__byte_ptr[r11], 0xFF);
            a.lea(ecx, __[rdi + rdi * 2]);    // head = 3 × slot
            a.mov(eax, ecx);
            a.shl(eax, 4);
            a.add(eax, L.VirtqDesc);
            a.mov(__qword_ptr[rax], r10);
            a.mov(__dword_ptr[rax + 8], 16);
            a.mov(__word_ptr[rax + 12], 1);   // NEXT
            a.lea(edx, __[rcx + 1]);
            a.mov(__word_ptr[rax + 14], dx);
            a.test(r9d, r9d);
            a.jz(noData);
            a.mov(__qword_ptr[rax + 16], r8);
            a.mov(__dword_ptr[rax + 24], r9d);
            a.mov(edx, 1);                    // NEXT
            a.test(esi, esi);
            a.jnz(flagsDone);
            a.mov(edx, 3);                    // NEXT | WRITE (device writes the buffer)
            a.Label(ref flagsDone);
            a.mov(__word_ptr[rax + 28], dx);
            a.lea(edx, __[rcx + 2]);
            a.mov(__word_ptr[rax + 30], dx);
            a.jmp(statusDesc);
            a.Label(ref noData);
            a.lea(edx, __[rcx + 2]);
            a.mov(__word_ptr[rax + 14], dx);
            a.Label(ref statusDesc);
            a.mov(__qword_ptr[rax + 32], r11);
            a.mov(__dword_ptr[rax + 40], 1);
            a.mov(__dword_ptr[rax + 44], 2);  // WRITE, next 0
            a.mov(eax, __dword_ptr[rbp + VAvailShadow]);
            a.mov(edx, __dword_ptr[rbp + VQSize]);
            a.dec(edx);
            a.and(eax, edx);
            a.mov(__word_ptr[rax * 2 + (int)(L.VirtqAvail + 4)], cx);
            a.inc(__dword_ptr[rbp + VAvailShadow]);
            a.ret();
        }

        // virtioKick: publishes avail.idx, then notifies queue 0 unless the device set VRING_USED_F_NO_NOTIFY.
        Define(ref _virtioKick);
        {
            var skip = a.CreateLabel();
            a.mov(eax, __dword_ptr[rbp + VAvailShadow]);
            a.cmp(eax, __dword_ptr[rbp + VAvailPublished]);
            a.je(skip);
            a.mov(__dword_ptr[rbp + VAvailPublished], eax);
            a.mov(__word_ptr[(ulong)(L.VirtqAvail + 2)], ax);
            a.mfence();
            a.test(__byte_ptr[(ulong)L.VirtqUsed], 1);
            a.jnz(skip);
            a.mov(rax, __qword_ptr[rbp + VNotify]);
            a.mov(__word_ptr[rax], 0);
            a.Label(ref skip);
            a.ret();
        }

        // virtioWait → eax = slot, edx = status byte of its request; eax = -1 on timeout.
        Define(ref _virtioWait);
        {
            var poll = a.CreateLabel();
            var got = a.CreateLabel();
            var timeout = a.CreateLabel();
            a.mov(ecx, __dword_ptr[rbp + VUsedLast]);
            a.movzx(eax, __word_ptr[(ulong)(L.VirtqUsed + 2)]);
            a.cmp(ax, cx);
            a.jne(got);
            TimeoutStart();
            a.Label(ref poll);
            a.pause();
            a.movzx(eax, __word_ptr[(ulong)(L.VirtqUsed + 2)]);
            a.cmp(ax, cx);
            a.jne(got);
            TimeoutCheck(timeout);
            a.jmp(poll);
            a.Label(ref timeout);
            a.mov(eax, -1);
            a.ret();
            a.Label(ref got);
            a.mov(eax, ecx);
            a.mov(edx, __dword_ptr[rbp + VQSize]);
            a.dec(edx);
            a.and(eax, edx);
            a.mov(eax, __dword_ptr[rax * 8 + (int)(L.VirtqUsed + 4)]);   // used elem id (the chain's head)
            a.inc(__dword_ptr[rbp + VUsedLast]);
            a.xor(edx, edx);
            a.mov(ecx, 3);
            a.div(ecx);
            a.movzx(edx, __byte_ptr[rax + (int)L.VirtioStatus]);
            a.ret();
        }

        // virtioRw(edi = 0 read / 1 write, rsi = lba, edx = sectors, r8 = buffer) → eax = 0 or status / error code.
        Define(ref _virtioRw);
        {
            a.mov(r9d, edx);
            a.shl(r9d, 9);
            a.mov(rdx, rsi);
            a.mov(esi, edi);
            a.xor(edi, edi);
            var common = a.CreateLabel();
            a.Label(ref common);
            a.call(_virtioSubmit);
            a.call(_virtioKick);
            a.call(_virtioWait);
            var ok = a.CreateLabel();
            a.cmp(eax, -1);
            a.jne(ok);
            a.mov(eax, ErrTimeout);
            a.ret();
            a.Label(ref ok);
            a.mov(eax, edx);
            a.ret();

            // virtioFlush → eax = 0 or status.
            Define(ref _virtioFlush);
            a.xor(edi, edi);
            a.mov(esi, 4);
            a.xor(edx, edx);
            a.xor(r9d, r9d);
            a.xor(r8d, r8d);
            a.jmp(common);
        }

        // benchVirtio: the bench state (B*) set up by the caller; keeps up to BQd requests in flight, republishing
        // once per batch of completions. → eax = 0 or error code.
        Define(ref _benchVirtio);
        {
            var prime = a.CreateLabel();
            var primed = a.CreateLabel();
            var main = a.CreateLabel();
            var inner = a.CreateLabel();
            var kick = a.CreateLabel();
            var done = a.CreateLabel();
            var error = a.CreateLabel();
            var submitSlot = a.CreateLabel();
            var handle = a.CreateLabel();
            a.push(r12);
            a.push(r13);
            a.xor(r12d, r12d);
            a.Label(ref prime);
            a.cmp(r12d, __dword_ptr[rbp + BQd]);
            a.jae(primed);
            a.cmp(__qword_ptr[rbp + BToSubmit], 0);
            a.je(primed);
            a.mov(edi, r12d);
            a.call(submitSlot);
            a.inc(r12d);
            a.jmp(prime);
            a.Label(ref primed);
            a.call(_virtioKick);
            a.Label(ref main);
            a.cmp(__qword_ptr[rbp + BInFlight], 0);
            a.je(done);
            a.call(handle);
            a.test(eax, eax);
            a.jnz(error);
            a.Label(ref inner);
            a.movzx(eax, __word_ptr[(ulong)(L.VirtqUsed + 2)]);
            a.cmp(ax, __word_ptr[rbp + VUsedLast]);
            a.je(kick);
            a.call(handle);
            a.test(eax, eax);
            a.jnz(error);
            a.jmp(inner);
            a.Label(ref kick);
            a.call(_virtioKick);
            a.jmp(main);
            a.Label(ref done);
            a.xor(eax, eax);
            a.Label(ref error);
            a.pop(r13);
            a.pop(r12);
            a.ret();

            // handle: waits for one completion, checks it, resubmits its slot if requests are left. → eax = 0 / error.
            a.Label(ref handle);
            a.call(_virtioWait);
            var notTimeout = a.CreateLabel();
            a.cmp(eax, -1);
            a.jne(notTimeout);
            a.mov(eax, ErrTimeout);
            a.ret();
            a.Label(ref notTimeout);
            var statusOk = a.CreateLabel();
            a.test(edx, edx);
            a.jz(statusOk);
            a.mov(eax, edx);
            a.ret();
            a.Label(ref statusOk);
            a.dec(__qword_ptr[rbp + BInFlight]);
            a.inc(__qword_ptr[rbp + BDone]);
            var noMore = a.CreateLabel();
            a.cmp(__qword_ptr[rbp + BToSubmit], 0);
            a.je(noMore);
            a.mov(edi, eax);
            a.call(submitSlot);
            a.Label(ref noMore);
            a.xor(eax, eax);
            a.ret();

            // submitSlot(edi = slot): next LBA, read into DataBuffer + slot × request bytes.
            a.Label(ref submitSlot);
            a.push(rdi);
            a.push(rdi);
            a.call(_genLba);
            a.pop(rdi);
            a.pop(rdi);
            a.mov(rdx, rax);
            a.mov(r9, __qword_ptr[rbp + BReqSect]);
            a.shl(r9d, 9);
            a.mov(r8d, edi);
            a.imul(r8, r9);
            a.add(r8, (int)L.DataBuffer);
            a.xor(esi, esi);
            a.dec(__qword_ptr[rbp + BToSubmit]);
            a.inc(__qword_ptr[rbp + BInFlight]);
            a.jmp(_virtioSubmit);
        }
    }
}
