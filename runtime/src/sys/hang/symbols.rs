//! Function names for raw code addresses of another process (a hung worker), from its
//! `/proc/PID/maps` (which file is mapped where) and the ELF symbol tables of those files.
//!
//! The symbol table (`.symtab`, else `.dynsym`) is small next to the DWARF a debug build
//! carries, and release builds keep it (they are not stripped), so names come back in
//! milliseconds even for a large debug binary, where a DWARF symboliser takes seconds on its
//! first use. Each object's table is read once, on the first address that falls in it, with
//! [`object::ReadCache`], which reads only the sections it is asked for; only the names of the
//! functions a report shows are read and demangled.
//!
//! Each line names the object and the address relative to it (`corral-testbed+0x1a2b3`), so
//! that `addr2line -e <object> 0x1a2b3` gives file and line afterwards.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::{
    Object, ObjectSegment, ObjectSymbol, ObjectSymbolTable, ReadCache, SegmentFlags, SymbolIndex, SymbolKind,
};

/// Where a function starts, relative to its object's load address, and where its name is.
#[derive(Debug, Clone, Copy)]
struct Function {
    start: u64,
    size: u64,
    /// Its index in the symbol table (`dynamic`: in `.dynsym`), to read the name from.
    index: usize,
    dynamic: bool,
}

/// An object's functions, and the open file their names are read from.
#[derive(Debug)]
struct Table {
    file: ReadCache<File>,
    /// Sorted by start.
    functions: Vec<Function>,
    /// Its executable `PT_LOAD` segments: `(virtual address, file offset, file size)`.
    segments: Vec<(u64, u64, u64)>,
}

/// One executable mapping of a file, as `/proc/PID/maps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    /// The file offset mapped at `start`.
    offset: u64,
}

/// One loaded object (the executable or a shared library): where it is mapped, and its
/// functions once they have been read.
#[derive(Debug)]
struct Loaded {
    /// The file to read: `/proc/PID/exe` for the executable, which is the running image
    /// even when the file on disk was replaced since (an upgrade); none for the vDSO.
    path: Option<PathBuf>,
    /// The object's name for the report.
    label: String,
    /// Its path as the maps show it (without a ` (deleted)` suffix).
    mapped: String,
    /// Its executable mappings.
    text: Vec<Mapping>,
    /// Its functions; `None` until read, `Some(None)` when it has no readable table.
    table: Option<Option<Table>>,
}

/// What an address resolved to.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Resolved<'a> {
    /// The object's name (the file name of the executable or library).
    pub object: &'a str,
    /// The address relative to the object's load address (what `addr2line -e` takes).
    pub relative: u64,
    /// The function (demangled) and the offset into it, when the symbol table has one there.
    pub function: Option<(String, u64)>,
}

/// Names for addresses in a process.
#[derive(Debug, Default)]
pub(super) struct Symbols {
    objects: Vec<Loaded>,
}

impl Symbols {
    /// The objects `pid` has mapped now (their tables are read later, as addresses need
    /// them). Empty when its maps cannot be read (it is gone): every address is then unknown.
    pub(super) fn of_process(pid: u32) -> Self {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else { return Symbols::default() };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        Symbols { objects: loaded_objects(pid, &maps, exe.as_deref()) }
    }

    /// What `addr` is: its object, its offset there and the function around it.
    pub(super) fn resolve(&mut self, addr: usize) -> Option<Resolved<'_>> {
        let (loaded, mapping) = self.objects.iter_mut().find_map(|o| {
            let mapping = *o.text.iter().find(|m| addr >= m.start && addr < m.end)?;
            Some((o, mapping))
        })?;
        let table = loaded.table.get_or_insert_with(|| loaded.path.as_deref().and_then(read_table));
        let Some(t) = table.as_ref() else {
            // No readable file: the offset into the file is the best there is.
            let relative = (addr - mapping.start) as u64 + mapping.offset;
            return Some(Resolved { object: &loaded.label, relative, function: None });
        };
        let relative = virtual_address(&t.segments, mapping, addr);
        let function = nearest(&t.functions, relative).and_then(|f| Some((name_of(&t.file, f)?, relative - f.start)));
        Some(Resolved { object: &loaded.label, relative, function })
    }
}

/// The object's virtual address (what its symbol table and `addr2line -e` use) of `addr`, in
/// `mapping`: the file offset at `addr`, placed in the executable segment that holds it. A
/// segment's file offset and virtual address agree modulo the page size, and the kernel maps
/// the page holding the segment's start, so the mapping's offset may lie up to a page before
/// the segment's.
fn virtual_address(segments: &[(u64, u64, u64)], mapping: Mapping, addr: usize) -> u64 {
    let file_offset = (addr - mapping.start) as u64 + mapping.offset;
    segments
        .iter()
        .find(|&&(_, offset, size)| file_offset >= offset && file_offset < offset + size)
        .map_or(file_offset, |&(vaddr, offset, _)| vaddr + (file_offset - offset))
}

/// The function whose range holds `relative`: the last one starting at or before it, if it
/// is long enough (a size of 0, which hand-written assembly has, counts as "up to the next").
fn nearest(functions: &[Function], relative: u64) -> Option<&Function> {
    let after = functions.partition_point(|f| f.start <= relative);
    let f = functions.get(after.checked_sub(1)?)?;
    (f.size == 0 || relative < f.start + f.size).then_some(f)
}

/// The functions of the object at `path`, sorted; `None` when the file cannot be read or has
/// no symbol table (a stripped binary: the report then keeps the offsets). Reads no name.
fn read_table(path: &Path) -> Option<Table> {
    let file = ReadCache::new(File::open(path).ok()?);
    let mut segments = Vec::new();
    let mut functions: Vec<Function> = {
        let elf = object::File::parse(&file).ok()?;
        for segment in elf.segments() {
            let executable =
                matches!(segment.flags(), SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
            if executable {
                let (offset, size) = segment.file_range();
                segments.push((segment.address(), offset, size));
            }
        }
        let text = |s: &object::Symbol<'_, '_, &ReadCache<File>>| s.kind() == SymbolKind::Text && s.address() != 0;
        let of = |dynamic: bool| {
            move |s: object::Symbol<'_, '_, &ReadCache<File>>| Function {
                start: s.address(),
                size: s.size(),
                index: s.index().0,
                dynamic,
            }
        };
        elf.symbols().filter(text).map(of(false)).chain(elf.dynamic_symbols().filter(text).map(of(true))).collect()
    };
    functions.sort_by_key(|f| (f.start, std::cmp::Reverse(f.size)));
    functions.dedup_by_key(|f| f.start);
    Some(Table { file, functions, segments })
}

/// The demangled name of `f`.
fn name_of(file: &ReadCache<File>, f: &Function) -> Option<String> {
    let elf = object::File::parse(file).ok()?;
    let index = SymbolIndex(f.index);
    let symbol =
        if f.dynamic { elf.dynamic_symbol_table()?.symbol_by_index(index) } else { elf.symbol_by_index(index) };
    Some(format!("{:#}", rustc_demangle::demangle(symbol.ok()?.name().ok()?)))
}

/// Every file `maps` (the text of `/proc/PID/maps`) shows mapped executable, with its
/// executable mappings; `exe` is where `/proc/PID/exe` points (the executable, read through
/// that link). The vDSO is kept (named, with offsets, but no file to read); anonymous mappings
/// and deleted files other than the executable are left out.
fn loaded_objects(pid: u32, maps: &str, exe: Option<&Path>) -> Vec<Loaded> {
    let mut out: Vec<Loaded> = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start();
        let vdso = path == "[vdso]";
        if !perms.contains('x') || !(path.starts_with('/') || vdso) {
            continue;
        }
        let (Some((start, end)), Ok(offset)) = (range.split_once('-'), u64::from_str_radix(offset, 16)) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) else {
            continue;
        };
        let mapping = Mapping { start, end, offset };
        let name = path.strip_suffix(" (deleted)").unwrap_or(path);
        if let Some(known) = out.iter_mut().find(|o| o.mapped == name) {
            known.text.push(mapping);
            continue;
        }
        let is_exe = exe.is_some_and(|e| e.as_os_str() == path || e.as_os_str() == name);
        let file = if is_exe {
            Some(PathBuf::from(format!("/proc/{pid}/exe")))
        } else if vdso {
            None
        } else if name != path {
            // A deleted library: its file is gone.
            continue;
        } else {
            Some(PathBuf::from(name))
        };
        let label = name.rsplit('/').next().unwrap_or(name).to_string();
        out.push(Loaded { path: file, label, mapped: name.to_string(), text: vec![mapping], table: None });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_function_with_a_name() -> usize {
        a_function_with_a_name as *const () as usize
    }

    #[test]
    fn a_function_of_the_executable_is_named() {
        let addr = std::hint::black_box(a_function_with_a_name()) + 1;
        let mut symbols = Symbols::of_process(std::process::id());
        let r = symbols.resolve(addr).expect("the address is in the executable's text");
        let (name, offset) = r.function.expect("test binaries keep their symbol table");
        assert!(name.contains("a_function_with_a_name"), "{name}");
        assert_eq!(offset, 1);
    }

    #[test]
    fn a_libc_function_is_named_from_its_dynamic_symbols() {
        let mut symbols = Symbols::of_process(std::process::id());
        let r = symbols.resolve(libc::getpid as *const () as usize).expect("libc is loaded");
        assert!(r.object.starts_with("libc"), "{}", r.object);
        assert!(r.function.as_ref().is_some_and(|(n, _)| n.contains("getpid")), "{r:?}");
    }

    #[test]
    fn an_address_outside_every_object_resolves_to_nothing() {
        let mut symbols = Symbols::of_process(std::process::id());
        let on_the_heap = Box::new(0u64);
        assert_eq!(symbols.resolve(&raw const *on_the_heap as usize), None);
    }

    #[test]
    fn maps_give_each_file_its_executable_mappings() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 42 /srv/app/server (deleted)
55d0c0100000-55d0c0900000 r-xp 00100000 fd:01 42 /srv/app/server (deleted)
7f0000000000-7f0000028000 r--p 00000000 fd:01 7 /usr/lib/libc.so.6
7f0000028000-7f00001bd000 r-xp 00028000 fd:01 7 /usr/lib/libc.so.6
7f0000200000-7f0000201000 r-xp 00000000 fd:01 8 /usr/lib/libgone.so (deleted)
7f0000300000-7f0000301000 rwxp 00000000 00:00 0
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
";
        let objects = loaded_objects(4242, maps, Some(Path::new("/srv/app/server (deleted)")));
        let summary: Vec<(&str, Option<&Path>, Vec<Mapping>)> =
            objects.iter().map(|o| (o.label.as_str(), o.path.as_deref(), o.text.clone())).collect();
        assert_eq!(
            summary,
            [
                (
                    "server",
                    Some(Path::new("/proc/4242/exe")),
                    vec![Mapping { start: 0x55d0c0100000, end: 0x55d0c0900000, offset: 0x100000 }]
                ),
                (
                    "libc.so.6",
                    Some(Path::new("/usr/lib/libc.so.6")),
                    vec![Mapping { start: 0x7f0000028000, end: 0x7f00001bd000, offset: 0x28000 }]
                ),
                ("[vdso]", None, vec![Mapping { start: 0x7ffc00000000, end: 0x7ffc00002000, offset: 0 }]),
            ]
        );
    }

    #[test]
    fn an_address_is_placed_in_the_segment_that_holds_its_file_offset() {
        // A segment at file offset 0x1234 and virtual address 0x401234, mapped from the
        // page before it (offset 0x1000) at 0x7000.
        let segments = [(0x401234, 0x1234, 0x5000)];
        let mapping = Mapping { start: 0x7000, end: 0xd000, offset: 0x1000 };
        assert_eq!(virtual_address(&segments, mapping, 0x7300), 0x401300);
        // Outside every segment: the file offset.
        assert_eq!(virtual_address(&segments, mapping, 0x7100), 0x1100);
    }

    #[test]
    fn nearest_respects_sizes_and_zero_sized_symbols() {
        let f = |start, size, index| Function { start, size, index, dynamic: false };
        let table = vec![f(0x10, 0x10, 1), f(0x30, 0, 2), f(0x40, 0x8, 3)];
        let at = |addr| nearest(&table, addr).map(|f| f.index);
        assert_eq!(at(0x0f), None);
        assert_eq!(at(0x1f), Some(1));
        assert_eq!(at(0x25), None);
        assert_eq!(at(0x3f), Some(2));
        assert_eq!(at(0x48), None);
    }
}
