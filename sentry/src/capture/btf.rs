//! Just enough of the kernel's BTF to find where a task's cgroup id lives, so that the probe
//! can read it with four plain loads instead of calling `bpf_get_current_cgroup_id` on every
//! write of every process on the host (the helper takes the RCU read lock and costs about 70 ns
//! per call on the development VM; the loads cost about 25; BENCHMARKS.md, "Capture cost").
//!
//! The path is the one the kernel's `task_dfl_cgroup()` and `cgroup_id()` follow:
//! `task_struct.cgroups` → `css_set.dfl_cgrp` → `cgroup.kn` → `kernfs_node.id`. Every step is
//! checked against the types BTF gives it (a pointer to the next struct, a 64-bit integer at
//! the end); anything else, and the probe keeps the helper.

use std::fmt;

/// The four links of the path, as (struct, member, what the member must be).
const PATH: [(&str, &str, Link); 4] = [
    ("task_struct", "cgroups", Link::PointerTo("css_set")),
    ("css_set", "dfl_cgrp", Link::PointerTo("cgroup")),
    ("cgroup", "kn", Link::PointerTo("kernfs_node")),
    ("kernfs_node", "id", Link::U64),
];

#[derive(Debug, Clone, Copy)]
enum Link {
    PointerTo(&'static str),
    U64,
}

/// Byte offsets of the path's members in this kernel's structs, in path order.
pub type CgroupIdPath = [u64; 4];

/// Why the path could not be read from a BTF blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfError(String);

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BtfError {}

impl From<String> for BtfError {
    fn from(msg: String) -> BtfError {
        BtfError(msg)
    }
}

fn err(msg: impl Into<String>) -> BtfError {
    BtfError::from(msg.into())
}

// Kinds (include/uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

const MAGIC: u16 = 0xeb9f;
const HEADER_BYTES: usize = 24;
const TYPE_BYTES: usize = 12;
const MEMBER_BYTES: usize = 12;

/// One type record: where it starts in the type section and its fixed fields.
#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` for ints, structs, unions and enums; `type` for pointers, typedefs and modifiers.
    size_or_type: u32,
    /// Offset of the record in the type section.
    at: usize,
}

struct Blob<'a> {
    types: &'a [u8],
    strings: &'a [u8],
    /// Type id - 1 → record (id 0 is void).
    index: Vec<Type>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> Blob<'a> {
    fn parse(data: &'a [u8]) -> Result<Blob<'a>, BtfError> {
        if data.len() < HEADER_BYTES {
            return Err(err(format!(
                "{} bytes is too short for a BTF header",
                data.len()
            )));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(err(format!(
                "bad BTF magic {magic:#06x} (expected {MAGIC:#06x}, little-endian)"
            )));
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).unwrap_or(0) as usize;
        let (hdr_len, type_off, type_len, str_off, str_len) =
            (field(0), field(1), field(2), field(3), field(4));
        let section = |off: usize, len: usize, what: &str| {
            hdr_len
                .checked_add(off)
                .and_then(|start| Some((start, start.checked_add(len)?)))
                .and_then(|(start, end)| data.get(start..end))
                .ok_or_else(|| {
                    err(format!(
                        "the BTF {what} section ({len} bytes at {off}) runs past the end of the {} bytes",
                        data.len()
                    ))
                })
        };
        let types = section(type_off, type_len, "type")?;
        let strings = section(str_off, str_len, "string")?;
        let mut index = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let (Some(name_off), Some(info), Some(size_or_type)) = (
                u32_at(types, at),
                u32_at(types, at + 4),
                u32_at(types, at + 8),
            ) else {
                return Err(err(format!("BTF type {} is truncated", index.len() + 1)));
            };
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                k if k == 0 || k > KIND_MAX => {
                    return Err(err(format!(
                        "BTF type {} has unknown kind {kind}",
                        index.len() + 1
                    )))
                }
                _ => 0,
            };
            index.push(Type {
                name_off,
                kind,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                at,
            });
            at += TYPE_BYTES + extra;
        }
        if at != types.len() {
            return Err(err("the last BTF type runs past the type section"));
        }
        Ok(Blob {
            types,
            strings,
            index,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        &rest[..end]
    }

    fn by_id(&self, id: u32) -> Option<Type> {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.index.get(i).copied())
    }

    /// The first struct named `name` that has members (forward declarations have none).
    fn struct_named(&self, name: &str) -> Result<Type, BtfError> {
        self.index
            .iter()
            .find(|t| {
                t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes()
            })
            .copied()
            .ok_or_else(|| err(format!("the kernel's BTF has no struct {name}")))
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Option<Type> {
        for _ in 0..32 {
            let t = self.by_id(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of member `member` of `owner`, checked to be what `link` says.
    fn member(&self, owner: &str, member: &str, link: Link) -> Result<u64, BtfError> {
        let s = self.struct_named(owner)?;
        for i in 0..s.vlen {
            let at = s.at + TYPE_BYTES + i * MEMBER_BYTES;
            let (Some(name_off), Some(ty), Some(bits)) = (
                u32_at(self.types, at),
                u32_at(self.types, at + 4),
                u32_at(self.types, at + 8),
            ) else {
                return Err(err(format!("struct {owner} is truncated")));
            };
            if self.name(name_off) != member.as_bytes() {
                continue;
            }
            // With the kind flag, the top 8 bits are a bitfield size.
            let (bit_offset, bitfield) = if s.kind_flag {
                (bits & 0x00ff_ffff, bits >> 24)
            } else {
                (bits, 0)
            };
            if bitfield != 0 || bit_offset % 8 != 0 {
                return Err(err(format!("{owner}.{member} is a bitfield")));
            }
            let target = self.resolve(ty);
            let fits = match (link, target) {
                (Link::PointerTo(next), Some(t)) if t.kind == KIND_PTR => {
                    self.resolve(t.size_or_type).is_some_and(|p| {
                        p.kind == KIND_STRUCT && self.name(p.name_off) == next.as_bytes()
                    })
                }
                (Link::U64, Some(t)) => {
                    matches!(t.kind, KIND_INT | KIND_ENUM | KIND_ENUM64) && t.size_or_type == 8
                }
                _ => false,
            };
            if !fits {
                let want = match link {
                    Link::PointerTo(next) => format!("a pointer to struct {next}"),
                    Link::U64 => "a 64-bit integer".into(),
                };
                return Err(err(format!("{owner}.{member} is not {want}")));
            }
            return Ok(u64::from(bit_offset / 8));
        }
        Err(err(format!("struct {owner} has no member {member}")))
    }
}

/// Where the current task's cgroup id lives, read from a kernel BTF blob
/// (`/sys/kernel/btf/vmlinux`).
pub fn cgroup_id_path(data: &[u8]) -> Result<CgroupIdPath, BtfError> {
    let blob = Blob::parse(data)?;
    let mut path = [0u64; 4];
    for (slot, (owner, member, link)) in path.iter_mut().zip(PATH) {
        *slot = blob.member(owner, member, link)?;
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small BTF blob built field by field.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        fn new() -> Builder {
            Builder {
                strings: vec![0],
                next_id: 1,
                ..Builder::default()
            }
        }

        fn string(&mut self, s: &str) -> u32 {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn push(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            size_or_type: u32,
            extra: &[u32],
        ) -> u32 {
            let name_off = if name.is_empty() {
                0
            } else {
                self.string(name)
            };
            for w in [name_off, (kind << 24) | vlen, size_or_type]
                .iter()
                .chain(extra)
            {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            self.push(name, KIND_INT, 0, bytes, &[bytes * 8])
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.push("", KIND_PTR, 0, to, &[])
        }

        /// A struct whose members are (name, type id, byte offset).
        fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let mut extra = Vec::new();
            for (m, ty, off) in members {
                extra.extend([self.string(m), *ty, off * 8]);
            }
            self.push(name, KIND_STRUCT, members.len() as u32, size, &extra)
        }

        fn bytes(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [
                HEADER_BYTES as u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A kernel-like blob with the path at known offsets; forward declarations come first,
    /// pointers go through typedefs and qualifiers as they do in vmlinux.
    fn kernel_like(id_bytes: u32) -> Vec<u8> {
        let mut b = Builder::new();
        // Ids are assigned in order: 1 u64, 2 fwd kernfs_node-like empty struct, ...
        let u64_ = b.int("unsigned long long", id_bytes);
        let _fwd = b.strukt("cgroup", 0, &[]);
        let kn = b.strukt("kernfs_node", 136, &[("parent", 0, 0), ("id", u64_, 96)]);
        let kn_ptr = b.ptr(kn);
        let cgroup = b.strukt("cgroup", 2240, &[("self", 0, 0), ("kn", kn_ptr, 256)]);
        let cgroup_ptr = b.ptr(cgroup);
        let css_set = b.strukt("css_set", 544, &[("dfl_cgrp", cgroup_ptr, 112)]);
        let volatile_css = b.push("", KIND_VOLATILE, 0, css_set, &[]);
        let css_ptr = b.ptr(volatile_css);
        let tagged = b.push("rcu", KIND_TYPE_TAG, 0, css_ptr, &[]);
        b.strukt(
            "task_struct",
            3264,
            &[("pid", u64_, 8), ("cgroups", tagged, 2376)],
        );
        b.bytes()
    }

    #[test]
    fn the_path_is_read_through_forward_declarations_typedefs_and_tags() {
        assert_eq!(cgroup_id_path(&kernel_like(8)), Ok([2376, 112, 256, 96]));
    }

    #[test]
    fn a_path_whose_types_do_not_match_is_refused() {
        let e = cgroup_id_path(&kernel_like(4)).unwrap_err();
        assert_eq!(e.to_string(), "kernfs_node.id is not a 64-bit integer");

        let mut b = Builder::new();
        let u64_ = b.int("u64", 8);
        b.strukt("task_struct", 64, &[("cgroups", u64_, 8)]);
        let e = cgroup_id_path(&b.bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "task_struct.cgroups is not a pointer to struct css_set"
        );

        let mut b = Builder::new();
        b.strukt("task_struct", 64, &[("pid", 0, 8)]);
        let e = cgroup_id_path(&b.bytes()).unwrap_err();
        assert_eq!(e.to_string(), "struct task_struct has no member cgroups");
    }

    #[test]
    fn broken_blobs_are_errors_not_panics() {
        let good = kernel_like(8);
        assert!(cgroup_id_path(&[]).is_err());
        assert!(cgroup_id_path(&good[..HEADER_BYTES + 5]).is_err());
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(cgroup_id_path(&bad_magic)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        // Every truncation and every single-byte corruption of the header and first types.
        for len in 0..good.len() {
            let _ = cgroup_id_path(&good[..len]);
        }
        for i in 0..good.len().min(200) {
            let mut c = good.clone();
            c[i] ^= 0xff;
            let _ = cgroup_id_path(&c);
        }
    }

    #[test]
    fn this_kernels_btf_gives_a_path() {
        let Ok(data) = std::fs::read(super::super::kernel::BTF_PATH) else {
            // No BTF here: kernel mode is unavailable and the probe never asks.
            assert!(std::env::var_os("CI").is_none(), "CI hosts have BTF");
            return;
        };
        let path = cgroup_id_path(&data).expect("the running kernel's BTF has the path");
        // Each member lies inside its struct; task_struct is large, the others are not.
        assert!(path[0] >= 8, "task_struct.cgroups at {}", path[0]);
        assert!(
            path.iter().all(|&off| off % 8 == 0),
            "pointers and u64 are aligned: {path:?}"
        );
    }
}
