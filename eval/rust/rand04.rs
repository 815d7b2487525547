//! rand 0.4's `Rng` API over Debian's rand 0.8 generators (Codetron, eval/langdeps.py).
//!
//! HumanEvalPack's Rust tests are written for `rand = "0.4"` (the harness builds them with CodeGeeX's
//! benchmark/rust/Cargo.toml): `rng.gen_range(low, high)`, `rng.gen()`, `rand::thread_rng()`,
//! `rand::random()`. Debian 12 ships only rand 0.8, whose `gen_range` takes a range, so two canonical
//! solutions (Rust/32, Rust/50) failed to compile. This crate is named `rand` and offers the 0.4
//! names and signatures (methods of 0.4's `Rng` trait and its free functions), drawing from rand 0.8's
//! generators; code written for 0.8 only (`gen_range(a..b)`, `gen_bool`) fails to compile, as it does
//! under the reference.
#![allow(clippy::all)]
extern crate rand08;

use rand08::distributions::uniform::SampleUniform;
use rand08::distributions::{Alphanumeric, Distribution, Standard};
use rand08::seq::SliceRandom;
use std::marker::PhantomData;

pub use rand08::rngs::{StdRng, ThreadRng};
pub use rand08::{thread_rng, random, RngCore, SeedableRng};

/// Distributions, as rand 0.8 names them (0.4's `Range`/`IndependentSample` are not provided).
pub mod distributions {
    pub use rand08::distributions::*;
}

/// rand 0.4's `Rng`: every method of that trait, implemented for every generator.
pub trait Rng: RngCore {
    fn next_u32(&mut self) -> u32 { RngCore::next_u32(self) }
    fn next_u64(&mut self) -> u64 { RngCore::next_u64(self) }
    fn next_f32(&mut self) -> f32 { rand08::Rng::gen(self) }
    fn next_f64(&mut self) -> f64 { rand08::Rng::gen(self) }
    fn fill_bytes(&mut self, dest: &mut [u8]) { RngCore::fill_bytes(self, dest) }
    fn gen<T>(&mut self) -> T where Standard: Distribution<T> { rand08::Rng::gen(self) }
    fn gen_iter<T>(&mut self) -> Generator<'_, T, Self> where Standard: Distribution<T> {
        Generator { rng: self, _marker: PhantomData }
    }
    /// A value in `[low, high)`; panics when `low >= high`, as 0.4 does.
    fn gen_range<T: PartialOrd + SampleUniform>(&mut self, low: T, high: T) -> T {
        assert!(low < high, "Rng.gen_range called with low >= high");
        rand08::Rng::gen_range(self, low..high)
    }
    /// True with probability 1/n (always for n <= 1), as 0.4 defines it.
    fn gen_weighted_bool(&mut self, n: u32) -> bool {
        n <= 1 || rand08::Rng::gen_range(self, 0..n) == 0
    }
    fn gen_ascii_chars(&mut self) -> AsciiGenerator<'_, Self> { AsciiGenerator { rng: self } }
    fn choose<'a, T>(&mut self, values: &'a [T]) -> Option<&'a T> { values.choose(self) }
    fn choose_mut<'a, T>(&mut self, values: &'a mut [T]) -> Option<&'a mut T> { values.choose_mut(self) }
    fn shuffle<T>(&mut self, values: &mut [T]) { values.shuffle(self) }
}

impl<R: RngCore + ?Sized> Rng for R {}

/// `Rng::gen_iter`'s iterator.
pub struct Generator<'a, T, R: ?Sized + 'a> {
    rng: &'a mut R,
    _marker: PhantomData<fn() -> T>,
}

impl<'a, T, R: RngCore + ?Sized> Iterator for Generator<'a, T, R> where Standard: Distribution<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> { Some(rand08::Rng::gen(self.rng)) }
}

/// `Rng::gen_ascii_chars`'s iterator: letters and digits.
pub struct AsciiGenerator<'a, R: ?Sized + 'a> {
    rng: &'a mut R,
}

impl<'a, R: RngCore + ?Sized> Iterator for AsciiGenerator<'a, R> {
    type Item = char;
    fn next(&mut self) -> Option<char> { Some(Alphanumeric.sample(self.rng) as char) }
}

/// rand 0.4's `weak_rng()`: a fast generator seeded from the thread's.
pub fn weak_rng() -> StdRng { StdRng::from_rng(thread_rng()).expect("seeding from thread_rng") }
