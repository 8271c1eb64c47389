// SPDX-License-Identifier: MIT
pragma solidity 0.8.19;

/// The rollup's settlement contract: it keeps the finalised state root and moves it forward one
/// proof at a time. A finalisation succeeds only when `oldRoot` is the current root, the public
/// inputs carry `oldRoot` and `newRoot` where the circuit puts them, and the verifier contract
/// (snark-verifier's, generated from the bundle circuit's verifying key) accepts the proof.
/// Anyone may finalise: a valid proof from the current root is all it takes.
contract Rollup {
    /// The verifier contract: calldata = public inputs (32 bytes each) ‖ proof; reverts unless valid.
    address public immutable verifier;
    /// How many public inputs the circuit has, and where the roots are among them.
    uint256 public immutable numInstances;
    uint256 public immutable oldRootIndex;
    uint256 public immutable newRootIndex;

    /// The finalised state root.
    bytes32 public root;
    /// Finalisations so far (the next one's index).
    uint256 public finalized;

    event Finalized(uint256 indexed index, bytes32 oldRoot, bytes32 newRoot);

    error NotAContract(address verifier);
    error BadLayout();
    error StaleRoot(bytes32 current, bytes32 given);
    error InstanceCount(uint256 expected, uint256 given);
    error RootsNotInInstances();
    error ProofRejected();

    constructor(
        address verifier_,
        uint256 numInstances_,
        uint256 oldRootIndex_,
        uint256 newRootIndex_,
        bytes32 genesisRoot
    ) {
        // A call to an address without code succeeds: it would accept every proof.
        if (verifier_.code.length == 0) revert NotAContract(verifier_);
        if (oldRootIndex_ >= numInstances_ || newRootIndex_ >= numInstances_) revert BadLayout();
        verifier = verifier_;
        numInstances = numInstances_;
        oldRootIndex = oldRootIndex_;
        newRootIndex = newRootIndex_;
        root = genesisRoot;
    }

    function finalize(
        bytes32 oldRoot,
        bytes32 newRoot,
        uint256[] calldata instances,
        bytes calldata proof
    ) external {
        if (oldRoot != root) revert StaleRoot(root, oldRoot);
        if (instances.length != numInstances) revert InstanceCount(numInstances, instances.length);
        if (bytes32(instances[oldRootIndex]) != oldRoot || bytes32(instances[newRootIndex]) != newRoot) {
            revert RootsNotInInstances();
        }
        (bool ok, ) = verifier.staticcall(abi.encodePacked(instances, proof));
        if (!ok) revert ProofRejected();
        root = newRoot;
        uint256 index = finalized;
        finalized = index + 1;
        emit Finalized(index, oldRoot, newRoot);
    }
}
