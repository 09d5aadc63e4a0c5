//! Function names for raw code addresses, from the ELF symbol tables of the loaded objects.
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

use std::ffi::{CStr, c_void};
use std::fs::File;
use std::path::PathBuf;

use object::{Object, ObjectSymbol, ObjectSymbolTable, ReadCache, SymbolIndex, SymbolKind};

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
}

/// One loaded object (the executable or a shared library): where it is mapped, and its
/// functions once they have been read.
#[derive(Debug)]
struct Loaded {
    /// The file to read: `/proc/self/exe` for the executable, which is the running image
    /// even when the file on disk was replaced since (an upgrade).
    path: PathBuf,
    /// The object's name for the report.
    label: String,
    /// Load bias: the in-memory address of the object's virtual address 0.
    bias: usize,
    /// Its executable segments, as absolute `[start, end)`.
    text: Vec<(usize, usize)>,
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

/// Names for addresses in this process.
#[derive(Debug)]
pub(super) struct Symbols {
    objects: Vec<Loaded>,
}

impl Symbols {
    /// The objects loaded now (their tables are read later, as addresses need them).
    pub(super) fn of_this_process() -> Self {
        Symbols { objects: loaded_objects() }
    }

    /// What `addr` is: its object, its offset there and the function around it.
    pub(super) fn resolve(&mut self, addr: usize) -> Option<Resolved<'_>> {
        let loaded = self.objects.iter_mut().find(|o| o.text.iter().any(|&(s, e)| addr >= s && addr < e))?;
        let relative = (addr - loaded.bias) as u64;
        let table = loaded.table.get_or_insert_with(|| read_table(&loaded.path));
        let function = table.as_ref().and_then(|t| {
            let f = nearest(&t.functions, relative)?;
            Some((name_of(&t.file, f)?, relative - f.start))
        });
        Some(Resolved { object: &loaded.label, relative, function })
    }
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
fn read_table(path: &std::path::Path) -> Option<Table> {
    let file = ReadCache::new(File::open(path).ok()?);
    let mut functions: Vec<Function> = {
        let elf = object::File::parse(&file).ok()?;
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
    Some(Table { file, functions })
}

/// The demangled name of `f`.
fn name_of(file: &ReadCache<File>, f: &Function) -> Option<String> {
    let elf = object::File::parse(file).ok()?;
    let index = SymbolIndex(f.index);
    let symbol =
        if f.dynamic { elf.dynamic_symbol_table()?.symbol_by_index(index) } else { elf.symbol_by_index(index) };
    Some(format!("{:#}", rustc_demangle::demangle(symbol.ok()?.name().ok()?)))
}

/// Every loaded object with its executable segments and load bias.
fn loaded_objects() -> Vec<Loaded> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: libc::size_t, data: *mut c_void) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info for the duration of the call, and
        // `data` is the Vec passed below, borrowed mutably for the whole iteration.
        let (info, out) = unsafe { (&*info, &mut *data.cast::<Vec<Loaded>>()) };
        if info.dlpi_phdr.is_null() {
            return 0;
        }
        // SAFETY: dlpi_phdr points to dlpi_phnum program headers of this object.
        let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
        let bias = info.dlpi_addr as usize;
        let text: Vec<(usize, usize)> = headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
            .map(|h| (bias + h.p_vaddr as usize, bias + h.p_vaddr as usize + h.p_memsz as usize))
            .collect();
        if text.is_empty() {
            return 0;
        }
        let name = if info.dlpi_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null dlpi_name is a NUL-terminated string valid during the call.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
        };
        // The first object, with an empty name, is the executable.
        let path = if name.is_empty() && out.is_empty() {
            PathBuf::from("/proc/self/exe")
        } else if name.is_empty() {
            // The vDSO: no file to read.
            return 0;
        } else {
            PathBuf::from(&name)
        };
        let label = if name.is_empty() {
            std::fs::read_link("/proc/self/exe")
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "exe".to_string())
        } else {
            name.rsplit('/').next().unwrap_or(&name).to_string()
        };
        out.push(Loaded { path, label, bias, text, table: None });
        0
    }
    let mut out: Vec<Loaded> = Vec::new();
    // SAFETY: the callback only reads the headers it is given and pushes into `out`, which
    // outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut out).cast()) };
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
        let mut symbols = Symbols::of_this_process();
        let r = symbols.resolve(addr).expect("the address is in the executable's text");
        let (name, offset) = r.function.expect("test binaries keep their symbol table");
        assert!(name.contains("a_function_with_a_name"), "{name}");
        assert_eq!(offset, 1);
    }

    #[test]
    fn a_libc_function_is_named_from_its_dynamic_symbols() {
        let mut symbols = Symbols::of_this_process();
        let r = symbols.resolve(libc::getpid as *const () as usize).expect("libc is loaded");
        assert!(r.object.starts_with("libc"), "{}", r.object);
        assert!(r.function.as_ref().is_some_and(|(n, _)| n.contains("getpid")), "{r:?}");
    }

    #[test]
    fn an_address_outside_every_object_resolves_to_nothing() {
        let mut symbols = Symbols::of_this_process();
        let on_the_heap = Box::new(0u64);
        assert_eq!(symbols.resolve(&raw const *on_the_heap as usize), None);
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
