// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title FORGE staking with an unstake cooldown
/// @notice Active stake counts for tiers; requesting an unstake moves it to a pending bucket
/// that can be withdrawn once `cooldown` seconds have passed. A new request adds to the
/// pending amount and restarts the cooldown for the whole pending amount, so the cooldown
/// cannot be dodged by requesting early with a small amount.
contract ForgeStaking is ReentrancyGuard {
    using SafeERC20 for IERC20;

    struct PendingUnstake {
        uint256 amount;
        uint256 availableAt;
    }

    IERC20 public immutable token;
    uint256 public immutable cooldown;

    uint256 public totalStaked;
    mapping(address => uint256) private _staked;
    mapping(address => PendingUnstake) private _pending;

    event Staked(address indexed user, uint256 amount, uint256 totalStaked);
    event UnstakeRequested(address indexed user, uint256 amount, uint256 availableAt, uint256 totalStaked);
    event Withdrawn(address indexed user, uint256 amount);

    error ZeroAmount();
    error InsufficientStake(uint256 requested, uint256 staked);
    error NothingToWithdraw();
    error CooldownNotOver(uint256 availableAt);

    constructor(IERC20 token_, uint256 cooldownSeconds) {
        token = token_;
        cooldown = cooldownSeconds;
    }

    /// @notice Pulls `amount` FORGE from the caller (needs prior approval) into active stake.
    /// @dev The `totalStaked` in the event is the caller's active stake after the call.
    function stake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 staked = _staked[msg.sender] + amount;
        _staked[msg.sender] = staked;
        totalStaked += amount;
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit Staked(msg.sender, amount, staked);
    }

    function requestUnstake(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 staked = _staked[msg.sender];
        if (amount > staked) revert InsufficientStake(amount, staked);
        unchecked {
            staked -= amount;
        }
        _staked[msg.sender] = staked;
        totalStaked -= amount;
        PendingUnstake storage pending = _pending[msg.sender];
        pending.amount += amount;
        pending.availableAt = block.timestamp + cooldown;
        emit UnstakeRequested(msg.sender, amount, pending.availableAt, staked);
    }

    function withdraw() external nonReentrant {
        PendingUnstake memory pending = _pending[msg.sender];
        if (pending.amount == 0) revert NothingToWithdraw();
        if (block.timestamp < pending.availableAt) revert CooldownNotOver(pending.availableAt);
        delete _pending[msg.sender];
        token.safeTransfer(msg.sender, pending.amount);
        emit Withdrawn(msg.sender, pending.amount);
    }

    function stakedOf(address user) external view returns (uint256) {
        return _staked[user];
    }

    function pendingOf(address user) external view returns (uint256 amount, uint256 availableAt) {
        PendingUnstake memory pending = _pending[user];
        return (pending.amount, pending.availableAt);
    }
}
