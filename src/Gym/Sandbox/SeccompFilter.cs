using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace K2RL.Gym.Sandbox;

/// <summary>
/// The seccomp filter every sandboxed process runs under (bwrap <c>--seccomp</c>, a classic BPF program). It closes
/// the doors to memory that neither RLIMIT_AS nor the <c>/work</c> size limit covers:
/// <list type="bullet">
/// <item>new namespaces: <c>unshare</c> and <c>clone</c> with any <c>CLONE_NEW*</c> flag, and <c>setns</c>, get EPERM.
/// A nested user namespace would give the program CAP_SYS_ADMIN over a new mount namespace, where it could mount
/// a tmpfs of any size (tmpfs pages are not in any process's address space);</item>
/// <item><c>clone3</c> gets ENOSYS (its flags are in memory, out of a filter's reach), so libc falls back to
/// <c>clone</c>, whose flags are checked;</item>
/// <item>mounting (<c>mount</c>, the new mount API, <c>pivot_root</c>, <c>umount2</c>, <c>chroot</c>) gets EPERM, even
/// though the dropped capabilities already refuse it;</item>
/// <item>anonymous shared memory that outlives its mapping, <c>memfd_create</c>, <c>memfd_secret</c> and SysV
/// <c>shmget</c>, gets EPERM;</item>
/// <item>a system call of another ABI (i386 <c>int 0x80</c>, x32) gets ENOSYS: its numbers differ, so it would slip
/// past the checks above.</item>
/// </list>
/// Everything else is allowed. x86-64 and arm64 only; other architectures get no filter, and the sandbox refuses
/// to run (<see cref="BubblewrapSandbox"/>).
/// </summary>
internal static class SeccompFilter
{
    private const uint AuditArchX8664 = 0xC000003E;
    private const uint AuditArchAarch64 = 0xC00000B7;
    private const uint X32SyscallBit = 0x40000000;

    // clone/unshare flags: CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
    // CLONE_NEWNET; unshare also has CLONE_NEWTIME (0x80, which in clone's flags is part of the exit signal).
    private const uint CloneNamespaces = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;
    private const uint UnshareNamespaces = CloneNamespaces | 0x00000080;

    private const uint Eperm = 1;
    private const uint Enosys = 38;
    private const uint RetAllow = 0x7FFF0000;
    private const uint RetErrno = 0x00050000;

    // struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little-endian: low word first).
    private const uint OffsetNr = 0;
    private const uint OffsetArch = 4;
    private const uint OffsetArg0 = 16;

    private const ushort LdAbsW = 0x20;
    private const ushort JeqK = 0x15;
    private const ushort JgeK = 0x35;
    private const ushort JsetK = 0x45;
    private const ushort RetK = 0x06;

    /// <summary>System-call numbers per architecture (asm/unistd_64.h; asm-generic/unistd.h for arm64).</summary>
    private sealed record Table(uint Arch, bool X32, uint CloneNr, uint Clone3, uint Unshare, uint[] Denied);

    private static readonly Table X64 = new(AuditArchX8664, X32: true, CloneNr: 56, Clone3: 435, Unshare: 272,
        // setns, mount, umount2, pivot_root, chroot, open_tree, move_mount, fsopen, fsconfig, fsmount, fspick,
        // mount_setattr, memfd_create, memfd_secret, shmget
        Denied: [308, 165, 166, 155, 161, 428, 429, 430, 431, 432, 433, 442, 319, 447, 29]);

    private static readonly Table Arm64 = new(AuditArchAarch64, X32: false, CloneNr: 220, Clone3: 435, Unshare: 97,
        Denied: [268, 40, 39, 41, 51, 428, 429, 430, 431, 432, 433, 442, 279, 447, 194]);

    /// <summary>The filter for this process's architecture as bwrap reads it (struct sock_filter[]), or null.</summary>
    public static byte[]? ForThisMachine() => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => Build(X64),
        Architecture.Arm64 => Build(Arm64),
        _ => null,
    };

    private enum Target
    {
        Next,
        Allow,
        DenyPerm,
        DenyNosys,
        CheckClone,
        CheckUnshare,
    }

    private readonly record struct Insn(ushort Code, uint K, Target True = Target.Next, Target False = Target.Next);

    private static byte[] Build(Table t)
    {
        var code = new List<Insn> { new(LdAbsW, OffsetArch), new(JeqK, t.Arch, Target.Next, Target.DenyNosys), new(LdAbsW, OffsetNr) };
        if (t.X32)
        {
            code.Add(new Insn(JgeK, X32SyscallBit, Target.DenyNosys));
        }

        code.Add(new Insn(JeqK, t.Clone3, Target.DenyNosys));
        code.Add(new Insn(JeqK, t.CloneNr, Target.CheckClone));
        code.Add(new Insn(JeqK, t.Unshare, Target.CheckUnshare));
        code.AddRange(t.Denied.Select(nr => new Insn(JeqK, nr, Target.DenyPerm)));
        code.Add(new Insn(RetK, RetAllow));

        // Jumps only go forward: the flag checks, then the returns they jump to.
        var labels = new Dictionary<Target, int> { [Target.CheckClone] = code.Count };
        code.Add(new Insn(LdAbsW, OffsetArg0));
        code.Add(new Insn(JsetK, CloneNamespaces, Target.DenyPerm, Target.Allow));
        labels[Target.CheckUnshare] = code.Count;
        code.Add(new Insn(LdAbsW, OffsetArg0));
        code.Add(new Insn(JsetK, UnshareNamespaces, Target.DenyPerm, Target.Allow));
        labels[Target.Allow] = code.Count;
        code.Add(new Insn(RetK, RetAllow));
        labels[Target.DenyPerm] = code.Count;
        code.Add(new Insn(RetK, RetErrno | Eperm));
        labels[Target.DenyNosys] = code.Count;
        code.Add(new Insn(RetK, RetErrno | Enosys));

        var bytes = new byte[8 * code.Count];
        for (int i = 0; i < code.Count; i++)
        {
            var span = bytes.AsSpan(8 * i, 8);
            BinaryPrimitives.WriteUInt16LittleEndian(span, code[i].Code);
            span[2] = Jump(i, code[i].True, labels);
            span[3] = Jump(i, code[i].False, labels);
            BinaryPrimitives.WriteUInt32LittleEndian(span[4..], code[i].K);
        }

        return bytes;
    }

    /// <summary>A forward jump from instruction <paramref name="i"/>: the count of instructions skipped.</summary>
    private static byte Jump(int i, Target target, Dictionary<Target, int> labels) =>
        target == Target.Next ? (byte)0 : checked((byte)(labels[target] - i - 1));
}
