using System.Runtime.CompilerServices;

// The tokenizer tests check the two merge paths against each other.
[assembly: InternalsVisibleTo("K2RL.Model.Tests")]
